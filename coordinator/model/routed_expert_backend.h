// Where the routed experts of MoE layers run. Standalone, the model computes them in process
// from its own weights; in expert-parallel mode a backend dispatches the tokens to the workers
// that host the selected experts and combines their weighted partial sums.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "coordinator/model/router.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

class RoutedExpertBackend {
 public:
  virtual ~RoutedExpertBackend() = default;
  // out[t] += Σ_k weight[t,k] · expert_{id[t,k]}(x[t]) for the n = sel.n_tokens tokens of
  // x [n, hidden]. UNAVAILABLE when a worker is gone; then `out` is unspecified.
  virtual absl::Status Run(const CpuContext& ctx, int64_t layer, const RouterSelection& sel,
                           const float* x, int64_t hidden, float* out) = 0;
};

}  // namespace dsv2
