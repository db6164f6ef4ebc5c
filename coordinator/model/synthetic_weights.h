// Random weights of every shape a ModelConfig implies, created in place on the context's
// device in its dtype: the whole model at real size (V2-Lite: 15.7 B parameters, 31.4 GB in
// bf16) without a checkpoint file, for benchmarks and load tests (--synthetic v2-lite).
// Values are deterministic for a seed, scaled 1/√fan_in so activations stay O(1); norm scales
// are near 1. They mean nothing: the text such a model writes is noise. W_UKᵀ and W_UV are
// drawn on their own, not split from a kv_b_proj (equally random, the same cost).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/quantize_weights.h"
#include "kernels/exec_context.h"

namespace dsv2 {

// With a --quantize scheme (CPU only), the matrices it covers are drawn in float32 a chunk at a
// time and quantized straight into its formats.
absl::StatusOr<ModelWeights> MakeSyntheticWeights(const ModelConfig& config, const ExecContext& ctx,
                                                  uint64_t seed = 1234,
                                                  const QuantScheme& scheme = {});

}  // namespace dsv2
