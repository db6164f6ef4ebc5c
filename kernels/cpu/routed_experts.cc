#include "kernels/routed_experts.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/matmul.h"
#include "kernels/silu_mul.h"

namespace dsv2::cpu {
namespace {

// The routed experts in the activation type T: each expert's gate, up and down outputs are
// rounded to T (MatMul's contract), the weighted sum over experts is float32 in `acc`.
template <typename T>
void RunExperts(const CpuContext& ctx, const RoutedExpertsArgs& a, float* acc) {
  const T* x = static_cast<const T*>(a.x);
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
  std::vector<T> xs, ys, gate_up;
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
    T* gate = gate_up.data();
    T* up = gate + m * width;
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
      float* dst = acc + tokens[e][i] * a.hidden;
      const T* src = ys.data() + i * a.hidden;
      const float wt = weights[e][i];
      for (int64_t j = 0; j < a.hidden; ++j) dst[j] += wt * ToFloat(src[j]);
    }
  }
}

}  // namespace

void RoutedExperts(const CpuContext& ctx, const RoutedExpertsArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.top_k >= 0 && a.n_local >= 0 && a.hidden >= 0);
  const int64_t count = a.n_tokens * a.hidden;
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* out = static_cast<T*>(a.out);
    const bool work = a.n_tokens > 0 && a.n_local > 0;
    if (work) {
      DSV2_CHECK(a.experts != nullptr && a.expert != nullptr && a.weight != nullptr &&
                 a.x != nullptr);
    }
    if constexpr (std::is_same_v<T, float>) {  // the sum runs in out itself
      if (!a.accumulate) std::fill_n(out, count, 0.0f);
      if (work) RunExperts<T>(ctx, a, out);
    } else {  // in float32, rounded into out once
      std::vector<float> acc(count, 0.0f);
      if (a.accumulate) WidenBf16(out, acc.data(), count);
      if (work) RunExperts<T>(ctx, a, acc.data());
      if (work || !a.accumulate) RoundToBf16(acc.data(), out, count);
    }
  });
}

}  // namespace dsv2::cpu
