#include "coordinator/model/moe_block.h"

#include <algorithm>
#include <vector>

#include "common/gated_mlp.h"
#include "common/status_macros.h"
#include "coordinator/model/remote_moe.h"
#include "kernels/check.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/matmul.h"
#include "kernels/op_profile.h"
#include "kernels/routed_experts.h"
#include "kernels/router_topk.h"

namespace dsv2 {
namespace {

// The bytes of the distinct local experts that `expert` [count] selects (host memory: the
// profile runs on the CPU only).
int64_t RoutedWeightBytes(const MoeWeights& w, const int32_t* expert, int64_t count) {
  std::vector<bool> used(w.experts.size(), false);
  int64_t bytes = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t e = expert[i] - w.expert_begin;
    if (e < 0 || e >= static_cast<int64_t>(used.size()) || used[e]) continue;
    used[e] = true;
    const MlpWeights& m = w.experts[e];
    bytes += m.gate.bytes() + m.up.bytes() + m.down.bytes();
  }
  return bytes;
}

// The layer's routing decision to the observer, in host memory.
void ObserveRouting(const ExecContext& ctx, const MoeArgs& a, int64_t k, const int32_t* expert,
                    const float* weight) {
  RouterSelection sel{.n_tokens = a.n,
                      .top_k = k,
                      .expert = std::vector<int32_t>(a.n * k),
                      .weight = std::vector<float>(a.n * k)};
  if (ctx.on_cuda()) {
    const absl::Status copied = [&]() -> absl::Status {
      DSV2_RETURN_IF_ERROR(ctx.cuda().CopyToHost(sel.expert.data(), expert, a.n * k * 4));
      DSV2_RETURN_IF_ERROR(ctx.cuda().CopyToHost(sel.weight.data(), weight, a.n * k * 4));
      return ctx.cuda().Synchronize();
    }();
    DSV2_CHECK_MSG(copied.ok(), "MoeForward: copying the routing to the observer failed");
  } else {
    std::copy_n(expert, a.n * k, sel.expert.begin());
    std::copy_n(weight, a.n * k, sel.weight.begin());
  }
  a.router_observer->Observe(a.layer, sel);
}

}  // namespace

absl::Status MoeForward(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                        const MoeArgs& a, RoutedExpertBackend* backend) {
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  Workspace& ws = ctx.workspace();
  WorkspaceScope scope(ws);
  float* logits = ws.Alloc<float>(a.n * c.n_routed_experts);  // [n, n_routed_experts]
  int32_t* expert = ws.Alloc<int32_t>(a.n * k);               // [n, top_k]
  float* weight = ws.Alloc<float>(a.n * k);                   // [n, top_k]
  {
    ProfileScope prof(ctx, "moe.router", w.router.bytes());
    MatMul(ctx, {.x = a.x,
                 .x_stride = hidden,
                 .n = a.n,
                 .w = w.router,
                 .y = logits,
                 .y_stride = c.n_routed_experts,
                 .y_float32 = true});
    RouterTopK(ctx, {.logits = logits,
                     .n_tokens = a.n,
                     .rule = RouterRuleFromConfig(c),
                     .expert = expert,
                     .weight = weight});
  }

  if (a.router_observer != nullptr) ObserveRouting(ctx, a, k, expert, weight);
  if (backend != nullptr) {
    return RemoteMoe(ctx, c, w,
                     {.layer = a.layer,
                      .x = a.x,
                      .n = a.n,
                      .expert = expert,
                      .weight = weight,
                      .out = a.out,
                      .staging = a.staging,
                      .while_away = a.while_away},
                     *backend);
  }
  ProfileScope prof(ctx, "moe.routed_experts");
  if (prof.active()) prof.set_bytes(RoutedWeightBytes(w, expert, a.n * k));
  RoutedExperts(ctx, {.experts = w.experts.data(),
                      .n_local = static_cast<int64_t>(w.experts.size()),
                      .expert_begin = w.expert_begin,
                      .expert = expert,
                      .weight = weight,
                      .n_tokens = a.n,
                      .top_k = k,
                      .hidden = hidden,
                      .x = a.x,
                      .out = a.out});
  prof.Stop();
  if (w.has_shared) {
    ProfileScope shared(ctx, "moe.shared_experts",
                        w.shared.gate.bytes() + w.shared.up.bytes() + w.shared.down.bytes());
    GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = a.out, .accumulate = true});
  }
  if (a.while_away != nullptr && *a.while_away) (*a.while_away)();
  return absl::OkStatus();
}

}  // namespace dsv2
