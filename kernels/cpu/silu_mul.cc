#include "kernels/silu_mul.h"

#include <algorithm>
#include <type_traits>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/simd_exp.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512 __attribute__((target("avx512f,fma")))
#define DSV2_AVX2 __attribute__((target("avx2,fma")))

namespace dsv2::cpu {
namespace {

using simd_exp::Exp;

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
