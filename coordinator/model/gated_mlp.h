// The gated MLP used by dense layers, shared experts and routed experts:
//   out = down(silu(gate(x)) · up(x))
#pragma once

#include <cstdint>
#include <vector>

#include "coordinator/model/model_weights.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

struct GatedMlpArgs {
  const float* x = nullptr;  // [n, hidden]
  int64_t n = 0;
  float* out = nullptr;     // [n, hidden]
  bool accumulate = false;  // out += mlp(x)
};

// scratch grows to 2·n·width floats.
void GatedMlp(const CpuContext& ctx, const MlpWeights& w, const GatedMlpArgs& args,
              std::vector<float>& scratch);

}  // namespace dsv2
