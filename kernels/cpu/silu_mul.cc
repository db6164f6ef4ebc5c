#include "kernels/silu_mul.h"

#include <algorithm>
#include <type_traits>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512 __attribute__((target("avx512f,fma")))
#define DSV2_AVX2 __attribute__((target("avx2,fma")))

namespace dsv2::cpu {
namespace {

// e^x in float32 to about 1 ulp: x = n·ln2 + r with n = round(x·log2 e) and |r| <= ln2/2
// (ln2 in two parts, so that r is exact), e^r by its Taylor polynomial of degree 7 (error
// < 6e-9 relative there), times 2^n. x is first clamped to [-104, 89], where e^x is 0 in float32
// and infinite beyond FLT_MAX; a NaN passes the clamps (max/min return their second operand).
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;  // 12 significant bits: n·kLn2Hi is exact
constexpr float kLn2Lo = 1.42860682030941723212e-6f;
constexpr float kTaylor[8] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24,
                              1.0f / 6,    0.5f,       1.0f,       1.0f};

DSV2_AVX512 inline __m512 Exp(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kTaylor[0]);
  for (int i = 1; i < 8; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kTaylor[i]));
  return _mm512_scalef_ps(p, n);  // p·2^n: overflow to inf, underflow through the subnormals
}

// 2^e for integer lanes e in the normal range [-126, 127], written into the exponent field.
DSV2_AVX2 inline __m256 Pow2(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

// The same steps in 8 lanes. AVX2 has no scalef: 2^n is built in the exponent field as two
// halves 2^(n/2)·2^(n − n/2), each in the normal range for every clamped x.
DSV2_AVX2 inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kTaylor[0]);
  for (int i = 1; i < 8; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kTaylor[i]));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, Pow2(half)), Pow2(_mm256_sub_epi32(ni, half)));
}

// out = gate / (1 + e^−gate) · up over [i0, i1) of one row, as SiluTimes computes it.
DSV2_AVX512 void SiluMulSpan512(const float* g, const float* u, float* o, int64_t i0, int64_t i1) {
  int64_t i = i0;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (; i + 16 <= i1; i += 16) {
    const __m512 gv = _mm512_loadu_ps(g + i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    _mm512_storeu_ps(
        o + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
  }
  if (i < i1) {
    const __mmask16 m = static_cast<__mmask16>((1u << (i1 - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    _mm512_mask_storeu_ps(
        o + i, m,
        _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, u + i)));
  }
}

DSV2_AVX2 void SiluMulSpan256(const float* g, const float* u, float* o, int64_t i0, int64_t i1) {
  int64_t i = i0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= i1; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(
        o + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
  for (; i < i1; ++i) o[i] = SiluTimes(g[i], u[i]);
}

void SiluMulSpanScalar(const float* g, const float* u, float* o, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) o[i] = SiluTimes(g[i], u[i]);
}

}  // namespace

void SiluMul(const CpuContext& ctx, const SiluMulArgs& a) {
  DSV2_CHECK(a.rows >= 0 && a.width >= 0);
  if (a.rows == 0 || a.width == 0) return;
  DSV2_CHECK(a.gate != nullptr && a.up != nullptr && a.out != nullptr);
  auto* span = ctx.isa() >= CpuIsa::kAvx512 ? SiluMulSpan512
               : ctx.isa() == CpuIsa::kAvx2 ? SiluMulSpan256
                                            : SiluMulSpanScalar;
  // Work items are pieces of up to kPiece elements of one row; out may alias gate or up
  // element for element, so any split is safe. In bfloat16 a piece is widened to float32, run
  // through the same span and rounded once (the CUDA twin's silu(g)·u in float, then act()).
  constexpr int64_t kPiece = 1024;
  const int64_t pieces = (a.width + kPiece - 1) / kPiece;
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    ctx.ParallelFor(a.rows * pieces, 16, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t r = item / pieces, p = item % pieces;
        const T* g = static_cast<const T*>(a.gate) + r * a.gate_stride;  // [width]
        const T* u = static_cast<const T*>(a.up) + r * a.up_stride;      // [width]
        T* o = static_cast<T*>(a.out) + r * a.out_stride;                // [width]
        const int64_t i0 = p * kPiece, i1 = std::min(a.width, (p + 1) * kPiece);
        if constexpr (std::is_same_v<T, float>) {
          span(g, u, o, i0, i1);
        } else {
          float gf[kPiece], uf[kPiece];
          WidenBf16(g + i0, gf, i1 - i0);
          WidenBf16(u + i0, uf, i1 - i0);
          span(gf, uf, gf, 0, i1 - i0);
          RoundToBf16(gf, o + i0, i1 - i0);
        }
      }
    });
  });
}

}  // namespace dsv2::cpu
