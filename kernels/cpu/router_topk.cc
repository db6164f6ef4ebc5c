#include "kernels/router_topk.h"

#include "kernels/check.h"

namespace dsv2 {

void CheckRouterTopKArgs(const RouterTopKArgs& a) {
  const RouterRule& r = a.rule;
  DSV2_CHECK(a.n_tokens >= 0);
  DSV2_CHECK_MSG(r.n_experts >= 1 && r.n_experts <= kMaxRoutedExperts,
                 "RouterTopK: n_experts outside [1, kMaxRoutedExperts]");
  DSV2_CHECK_MSG(r.top_k >= 1 && r.top_k <= kMaxRouterTopK && r.top_k <= r.n_experts,
                 "RouterTopK: top_k outside [1, min(n_experts, kMaxRouterTopK)]");
  DSV2_CHECK(!r.group_limited || (r.n_group >= 1 && r.n_experts % r.n_group == 0 &&
                                  r.topk_group >= 1 && r.topk_group <= r.n_group));
  DSV2_CHECK(a.n_tokens == 0 ||
             (a.logits != nullptr && a.expert != nullptr && a.weight != nullptr));
}

namespace cpu {

void RouterTopK(const CpuContext& /*ctx*/, const RouterTopKArgs& a) {
  CheckRouterTopKArgs(a);
  const RouterRule& r = a.rule;
  float scores[kMaxRoutedExperts];
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    RouteOneToken(r, a.logits + t * r.n_experts, scores, a.expert + t * r.top_k,
                  a.weight + t * r.top_k);
  }
}

}  // namespace cpu
}  // namespace dsv2
