// The MLA attention block of one layer in the absorbed form (REFERENCE.md §3): projections,
// RoPE, writing the latent cache, attention over it, and o_proj accumulated into the residual.
#pragma once

#include <cstdint>

#include "common/model_config.h"
#include "coordinator/model/forward_batch.h"
#include "coordinator/model/latent_kv_cache.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/rope_table.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

struct AttentionEnv {
  const CpuContext& ctx;
  const ModelConfig& config;
  const RopeTable& rope;
  LatentKvCache& cache;
  const TokenLayout& layout;
  int64_t layer = 0;
};

// x: [n, hidden] normalized input; residual: [n, hidden], residual += attention(x).
void MlaAttentionForward(const AttentionEnv& env, const AttentionWeights& w, const float* x,
                         float* residual);

}  // namespace dsv2
