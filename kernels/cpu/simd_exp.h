// e^x on AVX-512 and AVX2 lanes (SiLU, the expanded attention's softmax).
#pragma once

#include "kernels/cpu/simd_intrinsics.h"

namespace dsv2::cpu::simd_exp {

// e^x in float32 to about 1 ulp: x = n·ln2 + r with n = round(x·log2 e) and |r| <= ln2/2
// (ln2 in two parts, so that r is exact), e^r by its Taylor polynomial of degree 7 (error
// < 6e-9 relative there), times 2^n. x is first clamped to [-104, 89], where e^x is 0 in float32
// and infinite beyond FLT_MAX; a NaN passes the clamps (max/min return their second operand).
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;  // 12 significant bits: n·kLn2Hi is exact
constexpr float kLn2Lo = 1.42860682030941723212e-6f;
constexpr float kTaylor[8] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24,
                              1.0f / 6,    0.5f,       1.0f,       1.0f};

__attribute__((target("avx512f,fma"))) inline __m512 Exp(__m512 x) {
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
__attribute__((target("avx2,fma"))) inline __m256 Pow2(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

// The same steps in 8 lanes. AVX2 has no scalef: 2^n is built in the exponent field as two
// halves 2^(n/2)·2^(n − n/2), each in the normal range for every clamped x.
__attribute__((target("avx2,fma"))) inline __m256 Exp(__m256 x) {
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

}  // namespace dsv2::cpu::simd_exp
