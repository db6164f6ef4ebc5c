#include "coordinator/model/router.h"

#include "kernels/cpu_context.h"

namespace dsv2 {

RouterRule RouterRuleFromConfig(const ModelConfig& c) {
  return {.n_experts = static_cast<int32_t>(c.n_routed_experts),
          .top_k = static_cast<int32_t>(c.num_experts_per_tok),
          .group_limited = c.topk_method == TopkMethod::kGroupLimitedGreedy,
          .n_group = static_cast<int32_t>(c.n_group),
          .topk_group = static_cast<int32_t>(c.topk_group),
          .norm_topk_prob = c.norm_topk_prob,
          .routed_scaling_factor = static_cast<float>(c.routed_scaling_factor)};
}

RouterSelection RouteTokens(const ModelConfig& c, const float* logits, int64_t n_tokens) {
  RouterSelection sel;
  sel.n_tokens = n_tokens;
  sel.top_k = c.num_experts_per_tok;
  sel.expert.resize(n_tokens * sel.top_k);
  sel.weight.resize(n_tokens * sel.top_k);
  static const CpuContext kOneThread(1);  // the router needs no threads
  cpu::RouterTopK(kOneThread, {.logits = logits,
                               .n_tokens = n_tokens,
                               .rule = RouterRuleFromConfig(c),
                               .expert = sel.expert.data(),
                               .weight = sel.weight.data()});
  return sel;
}

}  // namespace dsv2
