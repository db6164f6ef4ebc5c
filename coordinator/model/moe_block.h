// The MoE block of one layer (REFERENCE.md §4): router, the routed experts each token selected,
// weighted and summed in float32, plus the shared experts.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "common/model_config.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/routed_expert_backend.h"
#include "coordinator/model/router.h"
#include "kernels/exec_context.h"

namespace dsv2 {

struct RemoteMoeStaging;  // remote_moe.h

struct MoeArgs {
  int64_t layer = 0;
  const void* x = nullptr;  // [n, hidden] normalized input
  int64_t n = 0;
  void* out = nullptr;                        // [n, hidden]: moe(x), written
  RemoteMoeStaging* staging = nullptr;        // with a backend on a GPU (remote_moe.h)
  RouterObserver* router_observer = nullptr;  // sees the routing decision (tests)
  // Work of the caller's that does not depend on this layer's result (another micro-batch's
  // attention): with a backend it runs while the routed tokens are away; else after.
  const std::function<void()>* while_away = nullptr;
};

// `backend` null: the routed experts bound in `w` run here; otherwise the backend runs them
// (remote_moe.h), from a CPU or a GPU model.
absl::Status MoeForward(const ExecContext& ctx, const ModelConfig& config, const MoeWeights& w,
                        const MoeArgs& args, RoutedExpertBackend* backend);

}  // namespace dsv2
