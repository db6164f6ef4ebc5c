#include "common/expert_shard.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/weight_binder.h"

namespace dsv2 {

absl::StatusOr<ExpertShard> BindExpertShard(const ModelConfig& c, const Checkpoint& ckpt,
                                            int64_t begin, int64_t end) {
  if (begin < 0 || begin > end || end > c.n_routed_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert range [", begin, ", ", end,
                                                   ") is outside [0, ", c.n_routed_experts, ")"));
  }
  WeightBinder b(ckpt);
  ExpertShard shard;
  shard.begin = begin;
  shard.end = end;
  shard.layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!c.IsMoeLayer(l)) continue;
    for (int64_t e = begin; e < end; ++e) {
      DSV2_ASSIGN_OR_RETURN(MlpWeights w,
                            b.Mlp(absl::StrCat("model.layers.", l, ".mlp.experts.", e),
                                  c.moe_intermediate_size, c.hidden_size));
      shard.layers[l].push_back(w);
    }
  }
  shard.bytes = b.bytes();
  return shard;
}

void RoutedExpertsForward(const CpuContext& ctx, const std::vector<MlpWeights>& experts,
                          int64_t expert_begin, const ExpertAssignments& a, const float* x,
                          int64_t hidden, float* out) {
  const int64_t n_local = static_cast<int64_t>(experts.size());
  // Tokens (and their weights) per local expert, in token order.
  std::vector<std::vector<int64_t>> tokens(n_local);
  std::vector<std::vector<float>> weights(n_local);
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    for (int64_t k = 0; k < a.top_k; ++k) {
      const int32_t id = a.expert[t * a.top_k + k];
      const int64_t e = id - expert_begin;
      if (id < 0 || e < 0 || e >= n_local) continue;
      tokens[e].push_back(t);
      weights[e].push_back(a.weight[t * a.top_k + k]);
    }
  }
  std::vector<float> xs, ys, scratch;
  for (int64_t e = 0; e < n_local; ++e) {
    const int64_t m = static_cast<int64_t>(tokens[e].size());
    if (m == 0) continue;
    xs.resize(m * hidden);  // [m, hidden] gathered inputs
    ys.resize(m * hidden);  // [m, hidden] expert outputs
    for (int64_t i = 0; i < m; ++i) {
      std::copy(x + tokens[e][i] * hidden, x + (tokens[e][i] + 1) * hidden, xs.data() + i * hidden);
    }
    GatedMlp(ctx, experts[e], {.x = xs.data(), .n = m, .out = ys.data()}, scratch);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out + tokens[e][i] * hidden;
      const float* src = ys.data() + i * hidden;
      const float wt = weights[e][i];
      for (int64_t j = 0; j < hidden; ++j) dst[j] += wt * src[j];
    }
  }
}

}  // namespace dsv2
