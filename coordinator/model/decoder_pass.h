// DecoderPass: one micro-batch's way through the decoder layers, in stages a caller can
// interleave with another micro-batch's (two-batch overlap):
//
//   pass(embed) → [Attention(l) → Mlp(l)] for each layer l → Logits
//
// Attention(l): x += the previous MLP's output; h = norm(x); delta = attention(h); x += delta;
//               h = norm(x).
// Mlp(l):       delta = moe(h) or mlp(h). With an expert backend the routed tokens leave for the
//               workers, and `while_away` (another micro-batch's attention) runs before the
//               partial sums are awaited; a dense layer runs it after its MLP.
// Logits(y):    y [n_out, vocab] float32 = lm_head(norm(x + delta)) of the rows asked for.
//
// Buffers x, h, delta come from the context's workspace when the pass is made; the stages
// allocate only temporaries inside their own scopes, so two passes can be interleaved.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "common/model_config.h"
#include "coordinator/model/forward_batch.h"
#include "coordinator/model/latent_kv_cache.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/routed_expert_backend.h"
#include "kernels/exec_context.h"

namespace dsv2 {

struct RemoteMoeStaging;  // remote_moe.h

// What every stage of every pass of one forward call needs.
struct DecoderEnv {
  const ExecContext& ctx;
  const ModelConfig& config;
  const ModelWeights& weights;
  const float* inv_freq;  // rope on the context's device
  float attn_factor;
  LatentKvCache& cache;
  RoutedExpertBackend* backend = nullptr;  // null: routed experts in process
  RemoteMoeStaging* staging = nullptr;     // with a backend on a GPU
  RouterObserver* router_observer = nullptr;
};

class DecoderPass {
 public:
  // Allocates the pass's buffers and embeds the layout's tokens into x.
  DecoderPass(const DecoderEnv& env, const TokenLayout& layout);

  void Attention(int64_t layer);
  absl::Status Mlp(int64_t layer, const std::function<void()>& while_away = {});
  void Logits(float* y);

 private:
  void Norm(const float* weight, const void* add);  // x += add (if any); h = norm(x)

  const DecoderEnv& env_;
  const TokenLayout& layout_;
  int64_t n_ = 0;
  void* x_ = nullptr;      // [n, hidden] residual stream
  void* h_ = nullptr;      // [n, hidden] normalized
  void* delta_ = nullptr;  // [n, hidden] the last sublayer's output
};

}  // namespace dsv2
