#include "kernels/logits_summary.h"

#include <cmath>
#include <limits>

#include "kernels/check.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define DSV2_AVX2 __attribute__((target("avx2,fma")))

namespace dsv2::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Inserts (l, id) into the sorted top list if it ranks there: logit descending, ids ascending.
void Offer(LogitsSummaryRow& r, int32_t k, float l, int32_t id) {
  if (std::isnan(l)) l = -kInf;
  if (r.top_n == k && !(l > r.top_logit[k - 1])) return;  // a tie with the k-th has a higher id
  int32_t pos = r.top_n < k ? r.top_n++ : k - 1;
  for (; pos > 0 && l > r.top_logit[pos - 1]; --pos) {
    r.top_logit[pos] = r.top_logit[pos - 1];
    r.top_id[pos] = r.top_id[pos - 1];
  }
  r.top_logit[pos] = l;
  r.top_id[pos] = id;
}

// Σ exp(double(l[i] − m)) over the non-NaN l[i] of a row whose maximum m is finite (so every
// exponent is <= 0). The vector forms compute each term to about 1 ulp of double, as std::exp
// and the CUDA twin do: x = k·ln2 + r (ln2 in two parts, |r| <= ln2/2), e^r by its Taylor
// polynomial of degree 13 (error < 5e-18 there), times 2^k; below -746 a term is 0.
double SumExpScalar(const float* l, int64_t n, float m) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::isnan(l[i]) ? 0.0 : std::exp(double{l[i] - m});
  return sum;
}

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // fdlibm's split of ln 2
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr int kDegree = 13;
// 1/13!, 1/12!, ..., 1/2!, 1, 1: Horner from the highest power.
constexpr double kTaylor[kDegree + 1] = {1.0 / 6227020800.0,
                                         1.0 / 479001600.0,
                                         1.0 / 39916800.0,
                                         1.0 / 3628800.0,
                                         1.0 / 362880.0,
                                         1.0 / 40320.0,
                                         1.0 / 5040.0,
                                         1.0 / 720.0,
                                         1.0 / 120.0,
                                         1.0 / 24.0,
                                         1.0 / 6.0,
                                         0.5,
                                         1.0,
                                         1.0};

DSV2_AVX512 inline __m512d ExpNonPositive(__m512d x) {
  x = _mm512_max_pd(_mm512_set1_pd(-746.0), x);
  const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(kLog2e)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(kLn2Hi), x);
  r = _mm512_fnmadd_pd(k, _mm512_set1_pd(kLn2Lo), r);
  __m512d p = _mm512_set1_pd(kTaylor[0]);
  for (int i = 1; i <= kDegree; ++i) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kTaylor[i]));
  return _mm512_scalef_pd(p, k);
}

DSV2_AVX512 double SumExp512(const float* l, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    const __mmask8 in = n - i >= 8 ? 0xff : static_cast<__mmask8>((1u << (n - i)) - 1);
    const __m256 v = _mm256_maskz_loadu_ps(in, l + i);
    const __mmask8 num = in & _mm256_cmp_ps_mask(v, v, _CMP_ORD_Q);  // NaN adds nothing
    const __m512d e = ExpNonPositive(_mm512_cvtps_pd(_mm256_sub_ps(v, mv)));
    acc = _mm512_mask_add_pd(acc, num, acc, e);
  }
  return _mm512_reduce_add_pd(acc);
}

// 2^k for integral k in [-1022, 1023] held as doubles: k + 1.5·2^52 puts k + 2^51 in the low
// mantissa bits, which become the exponent field.
DSV2_AVX2 inline __m256d Pow2(__m256d k) {
  const __m256i bits = _mm256_castpd_si256(_mm256_add_pd(k, _mm256_set1_pd(0x1.8p52)));
  const __m256i biased = _mm256_add_epi64(bits, _mm256_set1_epi64x(1023 - (int64_t{1} << 51)));
  return _mm256_castsi256_pd(_mm256_slli_epi64(biased, 52));
}

DSV2_AVX2 inline __m256d ExpNonPositive(__m256d x) {
  x = _mm256_max_pd(_mm256_set1_pd(-746.0), x);
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(kLog2e)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(kLn2Hi), x);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(kLn2Lo), r);
  __m256d p = _mm256_set1_pd(kTaylor[0]);
  for (int i = 1; i <= kDegree; ++i) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kTaylor[i]));
  // k down to -1077: two halves keep each power in the normal range.
  const __m256d half = _mm256_round_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.5)),
                                       _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm256_mul_pd(_mm256_mul_pd(p, Pow2(half)), Pow2(_mm256_sub_pd(k, half)));
}

DSV2_AVX2 double SumExp256(const float* l, int64_t n, float m) {
  const __m128 mv = _mm_set1_ps(m);
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 v = _mm_loadu_ps(l + i);
    const __m256d e = ExpNonPositive(_mm256_cvtps_pd(_mm_sub_ps(v, mv)));
    // All ones in the 64-bit lanes of the non-NaN logits: a NaN adds nothing.
    const __m256i num = _mm256_cvtepi32_epi64(_mm_castps_si128(_mm_cmpord_ps(v, v)));
    acc = _mm256_add_pd(acc, _mm256_and_pd(e, _mm256_castsi256_pd(num)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, acc);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + SumExpScalar(l + i, n - i, m);
}

}  // namespace

void LogitsSummary(const CpuContext& ctx, const LogitsSummaryArgs& a) {
  DSV2_CHECK(a.n >= 0 && a.vocab > 0 && a.top_n >= 0 && a.top_n <= kMaxSummaryTop);
  if (a.n == 0) return;
  DSV2_CHECK(a.logits != nullptr && a.rows != nullptr && a.out != nullptr);
  ctx.ParallelFor(a.n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const float* l = a.logits + static_cast<int64_t>(a.rows[j]) * a.vocab;  // [vocab]
      LogitsSummaryRow r;
      int32_t best = -1;
      float best_logit = -kInf;
      for (int64_t i = 0; i < a.vocab; ++i) {
        if (l[i] > best_logit || (best < 0 && l[i] == best_logit)) {
          best_logit = l[i];
          best = static_cast<int32_t>(i);
        }
      }
      r.argmax = best < 0 ? 0 : best;
      r.max = best_logit;
      double sum = 0.0;
      if (std::isfinite(best_logit)) {
        // exp in double, as the CUDA twin: each term is then within 1 ulp of double on both
        // devices, so the twins' log_sum agree to ~1e-15 whatever the order of the sum (a
        // float expf would not: CUDA's is within 2 ulp of float, glibc's correctly rounded).
        sum = ctx.isa() >= CpuIsa::kAvx512 ? SumExp512(l, a.vocab, best_logit)
              : ctx.isa() == CpuIsa::kAvx2 ? SumExp256(l, a.vocab, best_logit)
                                           : SumExpScalar(l, a.vocab, best_logit);
      } else {
        // NaN counts as −inf here, as in coordinator/serving/logprobs.cc.
        for (int64_t i = 0; i < a.vocab; ++i)
          sum += (std::isnan(l[i]) ? -kInf : l[i]) == best_logit;
      }
      r.log_sum = std::log(sum);
      const int32_t k = static_cast<int32_t>(std::min<int64_t>(a.top_n, a.vocab));
      for (int64_t i = 0; i < a.vocab && k > 0; ++i) Offer(r, k, l[i], static_cast<int32_t>(i));
      a.out[j] = r;
    }
  });
}

}  // namespace dsv2::cpu
