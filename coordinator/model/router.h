// The MoE router of REFERENCE.md §4: softmax scores over the routed experts, top-k selection
// (greedy or group_limited_greedy), then renormalization or scaling of the selected weights.
#pragma once

#include <cstdint>
#include <vector>

#include "common/model_config.h"

namespace dsv2 {

struct RouterSelection {
  int64_t n_tokens = 0;
  int64_t top_k = 0;
  std::vector<int32_t> expert;  // [n_tokens, top_k]
  std::vector<float> weight;    // [n_tokens, top_k]
};

// logits: [n_tokens, n_routed_experts] float32 (x · gateᵀ); turned into scores in place.
RouterSelection RouteTokens(const ModelConfig& config, float* logits, int64_t n_tokens);

}  // namespace dsv2
