// Where the routed experts of MoE layers run. Standalone, the model computes them in process
// from its own weights; in expert-parallel mode a backend dispatches the tokens to the workers
// that host the selected experts and combines their weighted partial sums.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "coordinator/model/router.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

class RoutedExpertBackend {
 public:
  virtual ~RoutedExpertBackend() = default;
  // out[t] += Σ_k weight[t,k] · expert_{id[t,k]}(x[t]) for the n = sel.n_tokens tokens of
  // x [n, hidden]. `while_away` (may be empty) is the caller's work that does not depend on the
  // result (the layer's shared experts): it runs while the tokens are with the workers, so it
  // hides part of the exchange. UNAVAILABLE when a worker is gone; then `out` is unspecified
  // (`while_away` has run or will not).
  virtual absl::Status Run(const CpuContext& ctx, int64_t layer, const RouterSelection& sel,
                           const float* x, int64_t hidden, float* out,
                           const std::function<void()>& while_away) = 0;
  // Whether x and out of Run are float32 device memory (a GPU data plane: NCCL) rather than
  // host memory. Must not change while the model runs.
  virtual bool device_activations() const { return false; }
};

}  // namespace dsv2
