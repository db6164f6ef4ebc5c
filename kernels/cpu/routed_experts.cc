#include "kernels/routed_experts.h"

#include <algorithm>
#include <vector>

#include "kernels/check.h"
#include "kernels/matmul.h"
#include "kernels/silu_mul.h"

namespace dsv2::cpu {

void RoutedExperts(const CpuContext& ctx, const RoutedExpertsArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.top_k >= 0 && a.n_local >= 0 && a.hidden >= 0);
  float* out = static_cast<float*>(a.out);
  if (!a.accumulate) std::fill_n(out, a.n_tokens * a.hidden, 0.0f);
  if (a.n_tokens == 0 || a.n_local == 0) return;
  DSV2_CHECK(a.experts != nullptr && a.expert != nullptr && a.weight != nullptr && a.x != nullptr);
  const float* x = static_cast<const float*>(a.x);
  // Tokens (and their weights) per local expert, in token order.
  std::vector<std::vector<int64_t>> tokens(a.n_local);
  std::vector<std::vector<float>> weights(a.n_local);
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    for (int64_t k = 0; k < a.top_k; ++k) {
      const int32_t id = a.expert[t * a.top_k + k];
      const int64_t e = id - a.expert_begin;
      if (id < 0 || e < 0 || e >= a.n_local) continue;
      tokens[e].push_back(t);
      weights[e].push_back(a.weight[t * a.top_k + k]);
    }
  }
  // Experts in ascending id: each token's sum runs in that fixed order.
  std::vector<float> xs, ys, gate_up;
  for (int64_t e = 0; e < a.n_local; ++e) {
    const int64_t m = static_cast<int64_t>(tokens[e].size());
    if (m == 0) continue;
    const MlpWeights& w = a.experts[e];
    const int64_t width = w.gate.rows;
    xs.resize(m * a.hidden);        // [m, hidden] gathered inputs
    ys.resize(m * a.hidden);        // [m, hidden] expert outputs
    gate_up.resize(2 * m * width);  // [m, width] gate, then [m, width] up
    for (int64_t i = 0; i < m; ++i) {
      std::copy(x + tokens[e][i] * a.hidden, x + (tokens[e][i] + 1) * a.hidden,
                xs.data() + i * a.hidden);
    }
    float* gate = gate_up.data();
    float* up = gate + m * width;
    MatMul(
        ctx,
        {.x = xs.data(), .x_stride = a.hidden, .n = m, .w = w.gate, .y = gate, .y_stride = width});
    MatMul(ctx,
           {.x = xs.data(), .x_stride = a.hidden, .n = m, .w = w.up, .y = up, .y_stride = width});
    SiluMul(ctx, {.gate = gate,
                  .up = up,
                  .out = gate,
                  .rows = m,
                  .width = width,
                  .gate_stride = width,
                  .up_stride = width,
                  .out_stride = width});
    MatMul(
        ctx,
        {.x = gate, .x_stride = width, .n = m, .w = w.down, .y = ys.data(), .y_stride = a.hidden});
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out + tokens[e][i] * a.hidden;
      const float* src = ys.data() + i * a.hidden;
      const float wt = weights[e][i];
      for (int64_t j = 0; j < a.hidden; ++j) dst[j] += wt * src[j];
    }
  }
}

}  // namespace dsv2::cpu
