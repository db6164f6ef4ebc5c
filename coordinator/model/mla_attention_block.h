// The MLA attention block of one layer in the absorbed form (REFERENCE.md §3): projections,
// the latent cache write (norm + RoPE fused), attention over the cache, values and o_proj.
#pragma once

#include <cstdint>

#include "common/model_config.h"
#include "coordinator/model/forward_batch.h"
#include "coordinator/model/latent_kv_cache.h"
#include "coordinator/model/model_weights.h"
#include "kernels/exec_context.h"

namespace dsv2 {

// What every layer's attention of one forward call shares.
struct AttentionEnv {
  const ExecContext& ctx;
  const ModelConfig& config;
  const float* inv_freq;  // [qk_rope_head_dim / 2] on the context's device
  float attn_factor;
  LatentKvCache& cache;
  const TokenLayout& layout;
};

// x: [n, hidden] normalized input; out: [n, hidden] = attention(x) (written).
void MlaAttentionForward(const AttentionEnv& env, int64_t layer, const AttentionWeights& w,
                         const void* x, void* out);

}  // namespace dsv2
