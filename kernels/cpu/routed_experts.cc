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

// The routed experts in the activation type T, in five parallel regions whatever the number of
// experts: the gather of each slot's input, every expert's gate and up products (one region),
// SiLU·mul over all slots, every expert's down product (one region), and the weighted sum per
// token. Each expert's outputs are rounded to T (MatMul's contract); the sum over experts is
// float32 in `acc`, in ascending expert id.
template <typename T>
void RunExperts(const CpuContext& ctx, const RoutedExpertsArgs& a, float* acc) {
  const T* x = static_cast<const T*>(a.x);
  const int64_t hidden = a.hidden;
  // Slots grouped by local expert (ascending), tokens in order within an expert.
  std::vector<int64_t> first(a.n_local + 1, 0);  // the first slot of each expert
  auto local = [&](int64_t t, int64_t k) -> int64_t {
    const int32_t id = a.expert[t * a.top_k + k];
    const int64_t e = id - a.expert_begin;
    return id < 0 || e < 0 || e >= a.n_local ? -1 : e;
  };
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    for (int64_t k = 0; k < a.top_k; ++k) {
      if (const int64_t e = local(t, k); e >= 0) ++first[e + 1];
    }
  }
  for (int64_t e = 0; e < a.n_local; ++e) first[e + 1] += first[e];
  const int64_t slots = first[a.n_local];
  if (slots == 0) return;
  std::vector<int64_t> slot_token(slots), next(first.begin(), first.end() - 1);
  std::vector<float> slot_weight(slots);
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    for (int64_t k = 0; k < a.top_k; ++k) {
      if (const int64_t e = local(t, k); e >= 0) {
        slot_token[next[e]] = t;
        slot_weight[next[e]++] = a.weight[t * a.top_k + k];
      }
    }
  }
  // Each token's slots in ascending expert id: the order of its sum.
  std::vector<int64_t> token_first(a.n_tokens + 1, 0), token_slots(slots);
  for (int64_t s = 0; s < slots; ++s) ++token_first[slot_token[s] + 1];
  for (int64_t t = 0; t < a.n_tokens; ++t) token_first[t + 1] += token_first[t];
  std::vector<int64_t> cursor(token_first.begin(), token_first.end() - 1);
  for (int64_t s = 0; s < slots; ++s) token_slots[cursor[slot_token[s]]++] = s;

  const int64_t width = a.experts[0].gate.rows;
  for (int64_t e = 0; e < a.n_local; ++e) {
    DSV2_CHECK_MSG(a.experts[e].gate.rows == width && a.experts[e].up.rows == width &&
                       a.experts[e].down.cols == width && a.experts[e].down.rows == hidden,
                   "RoutedExperts: experts of different shapes");
  }
  // The calling thread's buffers, kept between calls: fresh ones cost a zero fill and a page
  // fault per 4 KiB (a 512-token prefill's 42 MB took 15-19 ms of 110 per layer). The lambdas
  // below run on other threads too: they see these through plain pointers.
  thread_local std::vector<T> xs_buf, gate_buf, up_buf, ys_buf;
  for (auto* v : {&xs_buf, &ys_buf}) v->resize(std::max<size_t>(v->size(), slots * hidden));
  for (auto* v : {&gate_buf, &up_buf}) v->resize(std::max<size_t>(v->size(), slots * width));
  T* const xs = xs_buf.data();
  T* const gate = gate_buf.data();
  T* const up = up_buf.data();
  T* const ys = ys_buf.data();
  ctx.ParallelFor(slots, 16, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      std::copy_n(x + slot_token[s] * hidden, hidden, xs + s * hidden);
    }
  });
  std::vector<MatMulArgs> products;
  for (int64_t e = 0; e < a.n_local; ++e) {
    const int64_t m = first[e + 1] - first[e];
    if (m == 0) continue;
    const T* xe = xs + first[e] * hidden;
    products.push_back({.x = xe,
                        .x_stride = hidden,
                        .n = m,
                        .w = a.experts[e].gate,
                        .y = gate + first[e] * width,
                        .y_stride = width});
    products.push_back({.x = xe,
                        .x_stride = hidden,
                        .n = m,
                        .w = a.experts[e].up,
                        .y = up + first[e] * width,
                        .y_stride = width});
  }
  MatMulGroup(ctx, products);
  SiluMul(ctx, {.gate = gate,
                .up = up,
                .out = gate,
                .rows = slots,
                .width = width,
                .gate_stride = width,
                .up_stride = width,
                .out_stride = width});
  products.clear();
  for (int64_t e = 0; e < a.n_local; ++e) {
    const int64_t m = first[e + 1] - first[e];
    if (m == 0) continue;
    products.push_back({.x = gate + first[e] * width,
                        .x_stride = width,
                        .n = m,
                        .w = a.experts[e].down,
                        .y = ys + first[e] * hidden,
                        .y_stride = hidden});
  }
  MatMulGroup(ctx, products);
  ctx.ParallelFor(a.n_tokens, 4, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* dst = acc + t * hidden;
      for (int64_t i = token_first[t]; i < token_first[t + 1]; ++i) {
        const int64_t s = token_slots[i];
        const T* src = ys + s * hidden;
        const float wt = slot_weight[s];
        for (int64_t j = 0; j < hidden; ++j) dst[j] += wt * ToFloat(src[j]);
      }
    }
  });
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
