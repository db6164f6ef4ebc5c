#include "coordinator/model/moe_block.h"

#include <algorithm>
#include <functional>

#include "common/gated_mlp.h"
#include "kernels/matmul.h"
#include "kernels/routed_experts.h"
#include "kernels/router_topk.h"

namespace dsv2 {

absl::Status MoeForward(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                        const MoeArgs& a, RoutedExpertBackend* backend) {
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  Workspace& ws = ctx.workspace();
  WorkspaceScope scope(ws);
  float* logits = ws.Alloc<float>(a.n * c.n_routed_experts);  // [n, n_routed_experts]
  MatMul(ctx, {.x = a.x,
               .x_stride = hidden,
               .n = a.n,
               .w = w.router,
               .y = logits,
               .y_stride = c.n_routed_experts,
               .y_float32 = true});
  int32_t* expert = ws.Alloc<int32_t>(a.n * k);  // [n, top_k]
  float* weight = ws.Alloc<float>(a.n * k);      // [n, top_k]
  RouterTopK(ctx, {.logits = logits,
                   .n_tokens = a.n,
                   .rule = RouterRuleFromConfig(c),
                   .expert = expert,
                   .weight = weight});

  if (backend != nullptr) {
    if (ctx.on_cuda()) {
      return absl::UnimplementedError(
          "expert parallelism with a CUDA coordinator is not built yet (run it with --device cpu)");
    }
    const RouterSelection sel{.n_tokens = a.n,
                              .top_k = k,
                              .expert = std::vector<int32_t>(expert, expert + a.n * k),
                              .weight = std::vector<float>(weight, weight + a.n * k)};
    float* out = static_cast<float*>(a.out);
    std::fill_n(out, a.n * hidden, 0.0f);
    // The shared experts need nothing from the workers: they run while the routed tokens are
    // away, into their own buffer, and join the routed sum once it is back.
    float* shared = w.has_shared ? ws.Alloc<float>(a.n * hidden) : nullptr;  // [n, hidden]
    std::function<void()> shared_experts;
    if (shared != nullptr) {
      shared_experts = [&] { GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = shared}); };
    }
    if (absl::Status s = backend->Run(ctx.cpu(), a.layer, sel, static_cast<const float*>(a.x),
                                      hidden, out, shared_experts);
        !s.ok()) {
      return s;
    }
    for (int64_t i = 0; shared != nullptr && i < a.n * hidden; ++i) out[i] += shared[i];
    return absl::OkStatus();
  }
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
  if (w.has_shared) GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = a.out, .accumulate = true});
  return absl::OkStatus();
}

}  // namespace dsv2
