// The gated MLP used by dense layers, shared experts and routed experts:
//   out = down(silu(gate(x)) · up(x))
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu_context.h"
#include "kernels/weight_view.h"

namespace dsv2 {

// The weights of one gated MLP: a dense layer's MLP, the shared experts, or one routed expert.
struct MlpWeights {
  WeightView gate;  // [width, hidden]
  WeightView up;    // [width, hidden]
  WeightView down;  // [hidden, width]
};

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
