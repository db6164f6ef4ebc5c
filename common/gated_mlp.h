// The gated MLP used by dense layers and shared experts:
//   out = down(silu(gate(x)) · up(x))
// on whichever device the context names; temporaries come from the context's workspace.
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/mlp_weights.h"

namespace dsv2 {

struct GatedMlpArgs {
  const void* x = nullptr;  // [n, hidden] activation dtype
  int64_t n = 0;
  void* out = nullptr;      // [n, hidden] activation dtype
  bool accumulate = false;  // out += mlp(x)
};

void GatedMlp(const ExecContext& ctx, const MlpWeights& w, const GatedMlpArgs& args);

}  // namespace dsv2
