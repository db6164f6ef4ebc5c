#include "coordinator/model/mla_attention_block.h"

#include <algorithm>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/mla_attention.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

namespace dsv2 {

void MlaAttentionForward(const AttentionEnv& env, const AttentionWeights& w, const float* x,
                         float* residual) {
  const CpuContext& ctx = env.ctx;
  const ModelConfig& c = env.config;
  const int64_t n = env.layout.n_tokens;
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  const int64_t nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim;
  const int64_t qk = c.qk_head_dim(), v_dim = c.v_head_dim, r = c.kv_lora_rank;
  const int64_t row_dim = c.latent_cache_dim();  // r + rope_dim

  // 1. Query: [n, heads, qk] = [q_nope | q_pe] per head.
  std::vector<float> q(n * heads * qk);
  if (c.q_lora_rank) {
    const int64_t qr = *c.q_lora_rank;
    std::vector<float> qa(n * qr);  // [n, q_lora_rank]
    MatMul(ctx,
           {.x = x, .x_stride = hidden, .n = n, .w = w.q_a_proj, .y = qa.data(), .y_stride = qr});
    RmsNorm(ctx, {.x = qa.data(),
                  .y = qa.data(),
                  .weight = w.q_a_norm.data(),
                  .n = n,
                  .dim = qr,
                  .x_stride = qr,
                  .y_stride = qr,
                  .eps = static_cast<float>(c.rms_norm_eps)});
    MatMul(ctx, {.x = qa.data(),
                 .x_stride = qr,
                 .n = n,
                 .w = w.q_b_proj,
                 .y = q.data(),
                 .y_stride = heads * qk});
  } else {
    MatMul(
        ctx,
        {.x = x, .x_stride = hidden, .n = n, .w = w.q_proj, .y = q.data(), .y_stride = heads * qk});
  }

  // 2. Compressed KV: [n, r + rope_dim] = [c | k_pe]; normalize c, rope k_pe, write the cache.
  std::vector<float> ckv(n * row_dim);
  MatMul(
      ctx,
      {.x = x, .x_stride = hidden, .n = n, .w = w.kv_a_proj, .y = ckv.data(), .y_stride = row_dim});
  RmsNorm(ctx, {.x = ckv.data(),
                .y = ckv.data(),
                .weight = w.kv_a_norm.data(),
                .n = n,
                .dim = r,
                .x_stride = row_dim,
                .y_stride = row_dim,
                .eps = static_cast<float>(c.rms_norm_eps)});
  const RopeArgs rope_common{.positions = env.layout.positions.data(),
                             .inv_freq = env.rope.inv_freq.data(),
                             .attn_factor = env.rope.attn_factor};
  RopeArgs k_rope = rope_common;
  k_rope.x = ckv.data() + r;
  k_rope.n_tokens = n;
  k_rope.n_vecs = 1;
  k_rope.token_stride = row_dim;
  k_rope.vec_stride = row_dim;
  k_rope.dim = rope_dim;
  ApplyRope(ctx, k_rope);
  for (int64_t t = 0; t < n; ++t) {
    float* row = env.cache.Row(env.layer, env.layout.seq_ids[t], env.layout.positions[t]);
    std::copy(ckv.data() + t * row_dim, ckv.data() + (t + 1) * row_dim, row);
  }

  // 3. Absorbed query: [n, heads, r + rope_dim] = [q_nope · W_UK | rope(q_pe)].
  RopeArgs q_rope = rope_common;
  q_rope.x = q.data() + nope;
  q_rope.n_tokens = n;
  q_rope.n_vecs = heads;
  q_rope.token_stride = heads * qk;
  q_rope.vec_stride = qk;
  q_rope.dim = rope_dim;
  ApplyRope(ctx, q_rope);
  std::vector<float> q_abs(n * heads * row_dim);
  for (int64_t h = 0; h < heads; ++h) {
    MatMul(ctx, {.x = q.data() + h * qk,
                 .x_stride = heads * qk,
                 .n = n,
                 .w = w.WUkT(h, r, nope),
                 .y = q_abs.data() + h * row_dim,
                 .y_stride = heads * row_dim});
  }
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* pe = q.data() + (t * heads + h) * qk + nope;
      std::copy(pe, pe + rope_dim, q_abs.data() + (t * heads + h) * row_dim + r);
    }
  }

  // 4. Attention over the latent cache: o_lat [n, heads, r].
  std::vector<float> o_lat(n * heads * r);
  MlaAttention(ctx, {.q = q_abs.data(),
                     .out = o_lat.data(),
                     .n_tokens = n,
                     .n_heads = heads,
                     .kv_lora_rank = r,
                     .rope_dim = rope_dim,
                     .positions = env.layout.positions.data(),
                     .token_block_tables = env.layout.block_tables.data(),
                     .cache = env.cache.LayerView(env.layer),
                     .softmax_scale = static_cast<float>(c.SoftmaxScale())});

  // 5. Values per head, o = W_UV · o_lat: [n, heads, v]; then residual += o_proj(o).
  std::vector<float> o(n * heads * v_dim);
  for (int64_t h = 0; h < heads; ++h) {
    MatMul(ctx, {.x = o_lat.data() + h * r,
                 .x_stride = heads * r,
                 .n = n,
                 .w = w.WUv(h, nope, v_dim),
                 .y = o.data() + h * v_dim,
                 .y_stride = heads * v_dim});
  }
  MatMul(ctx, {.x = o.data(),
               .x_stride = heads * v_dim,
               .n = n,
               .w = w.o_proj,
               .y = residual,
               .y_stride = hidden,
               .accumulate = true});
}

}  // namespace dsv2
