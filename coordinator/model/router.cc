#include "coordinator/model/router.h"

#include <algorithm>

#include "kernels/softmax.h"
#include "kernels/topk.h"

namespace dsv2 {

RouterSelection RouteTokens(const ModelConfig& c, float* logits, int64_t n_tokens) {
  const int64_t n_experts = c.n_routed_experts;
  const int64_t k = c.num_experts_per_tok;
  RouterSelection sel;
  sel.n_tokens = n_tokens;
  sel.top_k = k;
  sel.expert.resize(n_tokens * k);
  sel.weight.resize(n_tokens * k);
  SoftmaxRows(logits, n_tokens, n_experts, n_experts);

  std::vector<float> masked(n_experts);
  std::vector<float> group_score(c.n_group);
  std::vector<int32_t> group_index(c.n_group);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* scores = logits + t * n_experts;
    int32_t* ids = &sel.expert[t * k];
    float* w = &sel.weight[t * k];
    if (c.topk_method == TopkMethod::kGroupLimitedGreedy) {
      // A group's score is its best expert's; keep the topk_group best groups, zero the rest.
      const int64_t per_group = n_experts / c.n_group;
      for (int64_t g = 0; g < c.n_group; ++g) {
        group_score[g] = *std::max_element(scores + g * per_group, scores + (g + 1) * per_group);
      }
      TopK(group_score.data(), c.n_group, c.topk_group, group_index.data(), group_score.data());
      std::fill(masked.begin(), masked.end(), 0.0f);
      for (int64_t i = 0; i < c.topk_group; ++i) {
        const int64_t g = group_index[i];
        std::copy(scores + g * per_group, scores + (g + 1) * per_group,
                  masked.begin() + g * per_group);
      }
      TopK(masked.data(), n_experts, k, ids, w);
    } else {
      TopK(scores, n_experts, k, ids, w);
    }
    if (k > 1 && c.norm_topk_prob) {
      float sum = 0.0f;
      for (int64_t i = 0; i < k; ++i) sum += w[i];
      for (int64_t i = 0; i < k; ++i) w[i] /= (sum + 1e-20f);
    } else {
      for (int64_t i = 0; i < k; ++i) w[i] *= static_cast<float>(c.routed_scaling_factor);
    }
  }
  return sel;
}

}  // namespace dsv2
