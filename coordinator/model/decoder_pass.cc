#include "coordinator/model/decoder_pass.h"

#include "common/gated_mlp.h"
#include "coordinator/model/mla_attention_block.h"
#include "coordinator/model/moe_block.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/op_profile.h"
#include "kernels/rms_norm.h"

namespace dsv2 {

DecoderPass::DecoderPass(const DecoderEnv& env, const TokenLayout& layout)
    : env_(env), layout_(layout), n_(layout.n_tokens) {
  Workspace& ws = env.ctx.workspace();
  const DType act = env.ctx.act_dtype();
  const int64_t hidden = env.config.hidden_size;
  x_ = ws.Alloc(act, n_ * hidden);
  h_ = ws.Alloc(act, n_ * hidden);
  delta_ = ws.Alloc(act, n_ * hidden);
  ProfileScope prof(env.ctx, "embed");
  EmbeddingLookup(env.ctx,
                  {.table = env.weights.embed, .ids = layout.tables.tokens, .n = n_, .out = x_});
}

void DecoderPass::Norm(const float* weight, const void* add) {
  const int64_t hidden = env_.config.hidden_size;
  ProfileScope prof(env_.ctx, "norm");
  RmsNorm(env_.ctx, {.x = x_,
                     .y = h_,
                     .weight = weight,
                     .n = n_,
                     .dim = hidden,
                     .x_stride = hidden,
                     .y_stride = hidden,
                     .eps = static_cast<float>(env_.config.rms_norm_eps),
                     .add = add});
}

void DecoderPass::Attention(int64_t l) {
  const LayerWeights& L = env_.weights.layers[l];
  const AttentionEnv attn{env_.ctx,         env_.config, env_.inv_freq,
                          env_.attn_factor, env_.cache,  layout_};
  Norm(L.input_norm, l > 0 ? delta_ : nullptr);  // x += previous MLP; h = norm(x)
  MlaAttentionForward(attn, l, L.attn, h_, delta_);
  Norm(L.post_attention_norm, delta_);  // x += attention; h = norm(x)
}

absl::Status DecoderPass::Mlp(int64_t l, const std::function<void()>& while_away) {
  const LayerWeights& L = env_.weights.layers[l];
  if (!L.is_moe) {
    {
      ProfileScope prof(env_.ctx, "mlp.dense",
                        L.mlp.gate.bytes() + L.mlp.up.bytes() + L.mlp.down.bytes());
      GatedMlp(env_.ctx, L.mlp, {.x = h_, .n = n_, .out = delta_});
    }
    if (while_away) while_away();
    return absl::OkStatus();
  }
  return MoeForward(env_.ctx, env_.config, L.moe,
                    {.layer = l,
                     .x = h_,
                     .n = n_,
                     .out = delta_,
                     .staging = env_.staging,
                     .router_observer = env_.router_observer,
                     .while_away = while_away ? &while_away : nullptr},
                    env_.backend);
}

void DecoderPass::Logits(float* y) {
  const ModelConfig& c = env_.config;
  const DType act = env_.ctx.act_dtype();
  const int64_t hidden = c.hidden_size, n_out = layout_.n_out;
  Norm(env_.weights.final_norm, delta_);
  // The rows whose logits were asked for, then lm_head on those alone.
  Workspace& ws = env_.ctx.workspace();
  WorkspaceScope scope(ws);
  void* rows = ws.Alloc(act, n_out * hidden);  // [n_out, hidden]
  ProfileScope prof(env_.ctx, "lm_head", env_.weights.lm_head.bytes());
  const WeightView normed{
      .data = h_, .dtype = act, .rows = n_, .cols = hidden, .row_stride = hidden};
  EmbeddingLookup(env_.ctx,
                  {.table = normed, .ids = layout_.tables.out_rows, .n = n_out, .out = rows});
  MatMul(env_.ctx, {.x = rows,
                    .x_stride = hidden,
                    .n = n_out,
                    .w = env_.weights.lm_head,
                    .y = y,
                    .y_stride = c.vocab_size,
                    .y_float32 = true});
}

}  // namespace dsv2
