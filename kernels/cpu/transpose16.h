// The 16×16 transpose the AVX-512 packed MatMul kernels (float32 and bf16 pairs) pack slabs with.
#pragma once

#include "kernels/cpu/simd_intrinsics.h"

namespace dsv2::matmul_internal {

// In place: v[i][j] ← v[j][i] for a 16×16 block of 32-bit lanes held in 16 registers (floats,
// or any 32-bit words cast to __m512: the shuffles move bits unchanged).
__attribute__((target("avx512f"))) inline void Transpose16(__m512 v[16]) {
  __m512 t[16], s[16];
  for (int p = 0; p < 8; ++p) {
    t[2 * p] = _mm512_unpacklo_ps(v[2 * p], v[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_ps(v[2 * p], v[2 * p + 1]);
  }
  // s[4q + c], 128-bit lane L: column 4L + c of rows 4q..4q+3.
  for (int q = 0; q < 4; ++q) {
    s[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    s[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
    s[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    s[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
  }
  // Column 4L + c gathers lane L of s[c], s[4 + c], s[8 + c], s[12 + c]: a 4×4 lane transpose.
  for (int c = 0; c < 4; ++c) {
    const __m512 ab02 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88);
    const __m512 ab13 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xdd);
    const __m512 cd02 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88);
    const __m512 cd13 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xdd);
    v[0 + c] = _mm512_shuffle_f32x4(ab02, cd02, 0x88);
    v[4 + c] = _mm512_shuffle_f32x4(ab13, cd13, 0x88);
    v[8 + c] = _mm512_shuffle_f32x4(ab02, cd02, 0xdd);
    v[12 + c] = _mm512_shuffle_f32x4(ab13, cd13, 0xdd);
  }
}

}  // namespace dsv2::matmul_internal
