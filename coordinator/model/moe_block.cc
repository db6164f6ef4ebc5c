#include "coordinator/model/moe_block.h"

#include <algorithm>
#include <vector>

#include "coordinator/model/gated_mlp.h"
#include "kernels/matmul.h"

namespace dsv2 {

void RoutedExpertsForward(const CpuContext& ctx, const MoeWeights& w, const RouterSelection& sel,
                          const float* x, int64_t hidden, float* out) {
  const int64_t n_local = static_cast<int64_t>(w.experts.size());
  // Tokens (and their weights) per local expert, in token order.
  std::vector<std::vector<int64_t>> tokens(n_local);
  std::vector<std::vector<float>> weights(n_local);
  for (int64_t t = 0; t < sel.n_tokens; ++t) {
    for (int64_t k = 0; k < sel.top_k; ++k) {
      const int64_t e = sel.expert[t * sel.top_k + k] - w.expert_begin;
      if (e < 0 || e >= n_local) continue;
      tokens[e].push_back(t);
      weights[e].push_back(sel.weight[t * sel.top_k + k]);
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
    GatedMlp(ctx, w.experts[e], {.x = xs.data(), .n = m, .out = ys.data()}, scratch);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out + tokens[e][i] * hidden;
      const float* src = ys.data() + i * hidden;
      const float wt = weights[e][i];
      for (int64_t j = 0; j < hidden; ++j) dst[j] += wt * src[j];
    }
  }
}

void MoeForward(const CpuContext& ctx, const ModelConfig& c, const MoeWeights& w,
                const MoeArgs& a) {
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
  RoutedExpertsForward(ctx, w, sel, a.x, hidden, routed.data());
  std::vector<float> scratch;
  if (w.has_shared) {
    GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = routed.data(), .accumulate = true},
             scratch);
  }
  for (int64_t i = 0; i < a.n * hidden; ++i) a.residual[i] += routed[i];
}

}  // namespace dsv2
