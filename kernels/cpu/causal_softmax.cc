#include "kernels/causal_softmax.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/simd_exp.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512 __attribute__((target("avx512f,fma")))
#define DSV2_AVX2 __attribute__((target("avx2,fma")))

namespace dsv2::cpu {
namespace {

using simd_exp::Exp;

// e[j] = e^(scale·s[j] − max) over j < n; returns Σ e (max: of scale·s over the row).
DSV2_AVX512 float ExpRow512(const float* s, int64_t n, float scale, float* e) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  const __m512 sc = _mm512_set1_ps(scale);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_mul_ps(sc, _mm512_loadu_ps(s + j)));
  float m = _mm512_reduce_max_ps(mx);
  for (; j < n; ++j) m = std::max(m, scale * s[j]);
  const __m512 mv = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (j = 0; j + 16 <= n; j += 16) {
    const __m512 v = Exp(_mm512_fmsub_ps(sc, _mm512_loadu_ps(s + j), mv));
    _mm512_storeu_ps(e + j, v);
    sum = _mm512_add_ps(sum, v);
  }
  float total = _mm512_reduce_add_ps(sum);
  for (; j < n; ++j) total += e[j] = std::exp(scale * s[j] - m);
  return total;
}

DSV2_AVX2 float ExpRow256(const float* s, int64_t n, float scale, float* e) {
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, scale * s[j]);
  const __m256 sc = _mm256_set1_ps(scale), mv = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = Exp(_mm256_fmsub_ps(sc, _mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(e + j, v);
    sum = _mm256_add_ps(sum, v);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  float total = 0.0f;
  for (float l : lanes) total += l;
  for (; j < n; ++j) total += e[j] = std::exp(scale * s[j] - m);
  return total;
}

float ExpRowScalar(const float* s, int64_t n, float scale, float* e) {
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, scale * s[j]);
  float total = 0.0f;
  for (int64_t j = 0; j < n; ++j) total += e[j] = std::exp(scale * s[j] - m);
  return total;
}

template <typename T>
void Softmax(const CpuContext& ctx, const CausalSoftmaxArgs& a) {
  const CpuIsa isa = ctx.isa();
  ctx.ParallelFor(a.rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> e(a.cols);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = std::min(a.cols, a.first_valid + i);
      const float* s = a.scores + i * a.score_stride;
      const float total = isa >= CpuIsa::kAvx512 ? ExpRow512(s, n, a.scale, e.data())
                          : isa >= CpuIsa::kAvx2 ? ExpRow256(s, n, a.scale, e.data())
                                                 : ExpRowScalar(s, n, a.scale, e.data());
      const float inv = 1.0f / total;
      for (int64_t j = 0; j < n; ++j) e[j] *= inv;
      T* p = static_cast<T*>(a.p) + i * a.p_stride;
      if constexpr (std::is_same_v<T, float>) {
        std::memcpy(p, e.data(), n * sizeof(float));
      } else {
        RoundToBf16(e.data(), p, n);
      }
      std::memset(static_cast<void*>(p + n), 0, (a.cols - n) * sizeof(T));
    }
  });
}

}  // namespace

void CausalSoftmax(const CpuContext& ctx, const CausalSoftmaxArgs& a) {
  DSV2_CHECK(a.rows >= 0 && a.cols >= 0 && a.first_valid >= 1);
  if (a.rows == 0 || a.cols == 0) return;
  DSV2_CHECK(a.scores != nullptr && a.p != nullptr);
  DispatchAct(ctx.act_dtype(), [&](auto tag) { Softmax<decltype(tag)>(ctx, a); });
}

}  // namespace dsv2::cpu
