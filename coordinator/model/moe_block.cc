#include "coordinator/model/moe_block.h"

#include <algorithm>
#include <vector>

#include "common/expert_shard.h"
#include "common/gated_mlp.h"
#include "kernels/matmul.h"

namespace dsv2 {

absl::Status MoeForward(const CpuContext& ctx, const ModelConfig& c, const MoeWeights& w,
                        const MoeArgs& a, RoutedExpertBackend* backend) {
  const int64_t hidden = c.hidden_size;
  std::vector<float> logits(a.n * c.n_routed_experts);  // [n, n_routed_experts]
  MatMul(ctx, {.x = a.x,
               .x_stride = hidden,
               .n = a.n,
               .w = w.router,
               .y = logits.data(),
               .y_stride = c.n_routed_experts});
  const RouterSelection sel = RouteTokens(c, logits.data(), a.n);

  std::vector<float> routed(a.n * hidden, 0.0f);  // [n, hidden], summed in float32
  if (backend != nullptr) {
    if (absl::Status s = backend->Run(ctx, a.layer, sel, a.x, hidden, routed.data()); !s.ok()) {
      return s;
    }
  } else {
    RoutedExpertsForward(ctx, w.experts, w.expert_begin,
                         {.n_tokens = sel.n_tokens,
                          .top_k = sel.top_k,
                          .expert = sel.expert.data(),
                          .weight = sel.weight.data()},
                         a.x, hidden, routed.data());
  }
  std::vector<float> scratch;
  if (w.has_shared) {
    GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = routed.data(), .accumulate = true},
             scratch);
  }
  for (int64_t i = 0; i < a.n * hidden; ++i) a.residual[i] += routed[i];
  return absl::OkStatus();
}

}  // namespace dsv2
