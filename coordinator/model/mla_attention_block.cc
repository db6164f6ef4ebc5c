#include "coordinator/model/mla_attention_block.h"

#include <vector>

#include "coordinator/model/mla_expanded_attention.h"
#include "kernels/latent_cache_write.h"
#include "kernels/matmul.h"
#include "kernels/mla_attention.h"
#include "kernels/op_profile.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

namespace dsv2 {
namespace {

// Tokens [first, first + count) of the step.
struct TokenRange {
  int64_t first = 0;
  int64_t count = 0;
};

// RoPE of the q_pe parts of the range's queries (q: the step's [n, heads, qk] rows, the last
// rope_dim values of each head).
RopeArgs QueryRope(const AttentionEnv& env, void* q, TokenRange range) {
  const ModelConfig& c = env.config;
  const int64_t heads = c.num_attention_heads, qk = c.qk_head_dim();
  return {.x = static_cast<char*>(q) +
               (range.first * heads * qk + c.qk_nope_head_dim) * DTypeSize(env.ctx.act_dtype()),
          .n_tokens = range.count,
          .n_vecs = heads,
          .token_stride = heads * qk,
          .vec_stride = qk,
          .dim = c.qk_rope_head_dim,
          .positions = env.layout.tables.positions + range.first,
          .inv_freq = env.inv_freq,
          .attn_factor = env.attn_factor};
}

void AbsorbedAttention(const AttentionEnv& env, int64_t layer, const AttentionWeights& w,
                       TokenRange range, void* q, void* o);

}  // namespace

void MlaAttentionForward(const AttentionEnv& env, int64_t layer, const AttentionWeights& w,
                         const void* x, void* out) {
  const ExecContext& ctx = env.ctx;
  const ModelConfig& c = env.config;
  const StepTables& t = env.layout.tables;
  const int64_t n = env.layout.n_tokens;
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  const int64_t rope_dim = c.qk_rope_head_dim;
  const int64_t qk = c.qk_head_dim(), v_dim = c.v_head_dim, r = c.kv_lora_rank;
  const int64_t row_dim = c.latent_cache_dim();  // r + rope_dim
  const float eps = static_cast<float>(c.rms_norm_eps);
  const DType act = ctx.act_dtype();
  WorkspaceScope scope(ctx.workspace());
  auto alloc = [&](int64_t count) { return ctx.workspace().Alloc(act, count); };

  // 1. Query: [n, heads, qk] = [q_nope | q_pe] per head.
  void* q = alloc(n * heads * qk);
  {
    ProfileScope prof(ctx, "attn.q_proj",
                      w.q_proj.bytes() + w.q_a_proj.bytes() + w.q_b_proj.bytes());
    if (c.q_lora_rank) {
      const int64_t qr = *c.q_lora_rank;
      void* qa = alloc(n * qr);  // [n, q_lora_rank]
      MatMul(ctx, {.x = x, .x_stride = hidden, .n = n, .w = w.q_a_proj, .y = qa, .y_stride = qr});
      RmsNorm(ctx, {.x = qa,
                    .y = qa,
                    .weight = w.q_a_norm,
                    .n = n,
                    .dim = qr,
                    .x_stride = qr,
                    .y_stride = qr,
                    .eps = eps});
      MatMul(ctx,
             {.x = qa, .x_stride = qr, .n = n, .w = w.q_b_proj, .y = q, .y_stride = heads * qk});
    } else {
      MatMul(ctx,
             {.x = x, .x_stride = hidden, .n = n, .w = w.q_proj, .y = q, .y_stride = heads * qk});
    }
  }

  // 2. Compressed KV [n, r + rope_dim] = [c | k_pe]; the cache gets [rmsnorm(c) | rope(k_pe)].
  void* ckv = alloc(n * row_dim);
  {
    ProfileScope prof(ctx, "attn.kv_a_proj", w.kv_a_proj.bytes());
    MatMul(ctx,
           {.x = x, .x_stride = hidden, .n = n, .w = w.kv_a_proj, .y = ckv, .y_stride = row_dim});
  }
  const LatentCacheLayerView cache = env.cache.LayerView(layer);
  {
    ProfileScope prof(ctx, "attn.cache_write");
    LatentCacheWrite(ctx, {.ckv = ckv,
                           .ckv_stride = row_dim,
                           .n_tokens = n,
                           .kv_lora_rank = r,
                           .rope_dim = rope_dim,
                           .norm_weight = w.kv_a_norm,
                           .eps = eps,
                           .positions = t.positions,
                           .slots = t.slots,
                           .inv_freq = env.inv_freq,
                           .attn_factor = env.attn_factor,
                           .cache = cache});
  }

  // Prefill chunks long enough take the expanded form (mla_expanded_attention.h); the tokens
  // between them, all of them on a GPU, the absorbed form (steps 3-5).
  const std::vector<ExpandedSegment> segments =
      ctx.on_cuda() ? std::vector<ExpandedSegment>{} : ExpandedSegments(c, env.layout);
  void* o = alloc(n * heads * v_dim);  // [n, heads, v]
  const int64_t act_size = DTypeSize(act);
  int64_t next = 0;  // the first token no form has taken yet
  for (const ExpandedSegment& s : segments) {
    if (s.first_token > next) AbsorbedAttention(env, layer, w, {next, s.first_token - next}, q, o);
    next = s.first_token + s.n_tokens;
  }
  if (next < n) AbsorbedAttention(env, layer, w, {next, n - next}, q, o);
  if (!segments.empty()) {
    ProfileScope prof(ctx, "attn.expanded_attention");
    for (const ExpandedSegment& s : segments) {
      // In place: the expanded form reads q itself.
      ApplyRope(ctx, QueryRope(env, q, {s.first_token, s.n_tokens}));
      ExpandedAttention(env, {.segment = s,
                              .w = w,
                              .cache = cache,
                              .layout = env.layout,
                              .q = static_cast<char*>(q) + s.first_token * heads * qk * act_size,
                              .q_stride = heads * qk,
                              .o = static_cast<char*>(o) + s.first_token * heads * v_dim * act_size,
                              .o_stride = heads * v_dim});
    }
  }
  {
    ProfileScope prof(ctx, "attn.o_proj", w.o_proj.bytes());
    MatMul(
        ctx,
        {.x = o, .x_stride = heads * v_dim, .n = n, .w = w.o_proj, .y = out, .y_stride = hidden});
  }
}

namespace {

// Steps 3-5 for the range's tokens: their rows of o [n, heads, v] from those of q [n, heads, qk]
// (q_pe not yet rotated).
void AbsorbedAttention(const AttentionEnv& env, int64_t layer, const AttentionWeights& w,
                       TokenRange range, void* q_all, void* o_all) {
  const ExecContext& ctx = env.ctx;
  const ModelConfig& c = env.config;
  const StepTables& t = env.layout.tables;
  const int64_t n = range.count, heads = c.num_attention_heads;
  const int64_t nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim;
  const int64_t qk = c.qk_head_dim(), v_dim = c.v_head_dim, r = c.kv_lora_rank;
  const int64_t row_dim = c.latent_cache_dim();
  const DType act = ctx.act_dtype();
  const int64_t act_size = DTypeSize(act);
  void* q = static_cast<char*>(q_all) + range.first * heads * qk * act_size;
  void* o = static_cast<char*>(o_all) + range.first * heads * v_dim * act_size;
  WorkspaceScope scope(ctx.workspace());
  auto alloc = [&](int64_t count) { return ctx.workspace().Alloc(act, count); };
  const LatentCacheLayerView cache = env.cache.LayerView(layer);

  // 3. Absorbed query [n, heads, r + rope_dim] = [q_nope · W_UK | rope(q_pe)], W_UK per head.
  void* q_abs = alloc(n * heads * row_dim);
  {
    ProfileScope prof(ctx, "attn.w_uk", w.w_uk_t.bytes());
    MatMul(ctx, {.x = q,
                 .x_stride = heads * qk,
                 .n = n,
                 .w = w.WUkT(0, r),
                 .y = q_abs,
                 .y_stride = heads * row_dim,
                 .batch = heads,
                 .x_batch_stride = qk,
                 .w_batch_stride = r * nope,
                 .y_batch_stride = row_dim});
  }
  {
    ProfileScope prof(ctx, "attn.rope");
    RopeArgs rope = QueryRope(env, q_all, range);  // into q_abs's rope slots
    rope.out = static_cast<char*>(q_abs) + r * act_size;
    rope.out_token_stride = heads * row_dim;
    rope.out_vec_stride = row_dim;
    ApplyRope(ctx, rope);
  }

  // 4. Attention over the latent cache: o_lat [n, heads, r].
  void* o_lat = alloc(n * heads * r);
  {
    ProfileScope prof(ctx, "attn.latent_attention");
    MlaAttention(ctx, {.q = q_abs,
                       .out = o_lat,
                       .n_tokens = n,
                       .n_heads = heads,
                       .kv_lora_rank = r,
                       .rope_dim = rope_dim,
                       .positions = t.positions + range.first,
                       .token_table = t.token_table + range.first,
                       .block_tables = t.block_tables,
                       .max_pages = env.layout.max_pages,
                       .max_position = env.layout.max_position,
                       .cache = cache,
                       .softmax_scale = static_cast<float>(c.SoftmaxScale())});
  }

  // 5. Values per head, o = W_UV · o_lat: [n, heads, v].
  {
    ProfileScope prof(ctx, "attn.w_uv", w.w_uv.bytes());
    MatMul(ctx, {.x = o_lat,
                 .x_stride = heads * r,
                 .n = n,
                 .w = w.WUv(0, v_dim),
                 .y = o,
                 .y_stride = heads * v_dim,
                 .batch = heads,
                 .x_batch_stride = r,
                 .w_batch_stride = v_dim * w.w_uv.row_stride,
                 .y_batch_stride = v_dim});
  }
}

}  // namespace
}  // namespace dsv2
