// The MoE router of REFERENCE.md §4 on the host: the rule of kernels/router_topk.h taken from a
// model config, and a whole-batch helper for callers that work on host vectors.
#pragma once

#include <cstdint>
#include <vector>

#include "common/model_config.h"
#include "kernels/router_topk.h"

namespace dsv2 {

RouterRule RouterRuleFromConfig(const ModelConfig& config);

struct RouterSelection {
  int64_t n_tokens = 0;
  int64_t top_k = 0;
  std::vector<int32_t> expert;  // [n_tokens, top_k]
  std::vector<float> weight;    // [n_tokens, top_k]
};

// Sees every MoE layer's routing decision as the model makes it (tests compare the decisions of
// two runs; RouterSelection is in host memory). Called on the thread running the forward pass.
class RouterObserver {
 public:
  virtual ~RouterObserver() = default;
  virtual void Observe(int64_t layer, const RouterSelection& selection) = 0;
};

// logits: [n_tokens, n_routed_experts] float32 (x · gateᵀ), host memory.
RouterSelection RouteTokens(const ModelConfig& config, const float* logits, int64_t n_tokens);

}  // namespace dsv2
