// The bf16 dot-product tile (vdpbf16ps, AVX512_BF16) for bfloat16 activations times bfloat16
// weights: each instruction multiplies 32 bf16 pairs exactly and adds them, two per float32
// lane, to the accumulators — no widening of the weights, half the bytes of x. Only called when
// the context's ISA is kAvx512Bf16. See matmul_internal.h.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

namespace dsv2::matmul_internal {
namespace {

// Software prefetch this far ahead in each weight row (as the float32 dot tile).
constexpr int64_t kPrefetchBytes = 1024;

DSV2_AVX512BF16 inline __m512bh Load32(const uint16_t* p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
}
// Lanes at or past `count` read nothing and are zero.
DSV2_AVX512BF16 inline __m512bh Load32Masked(const uint16_t* p, int64_t count) {
  const __mmask32 m = count >= 32 ? ~__mmask32{0} : (__mmask32{1} << count) - 1;
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, p));
}

// y[m, r] = the sum over k of x[m, k] · W[r, k], for m < M, r < R, stored by `out`.
template <int M, int R>
DSV2_AVX512BF16 void DotTile(const Bf16MatMul& a, int64_t t, int64_t r) {
  const uint16_t* w[R];
  for (int j = 0; j < R; ++j) w[j] = reinterpret_cast<const uint16_t*>(a.w.RowPtr(r + j));
  const uint16_t* x[M];
  for (int m = 0; m < M; ++m) x[m] = a.x + (t + m) * a.x_stride;
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < R; ++j) acc[m][j] = _mm512_setzero_ps();
  const int64_t cols = a.w.cols;
  int64_t k = 0;
  for (; k + 32 <= cols; k += 32) {
    for (int j = 0; j < R; ++j) __builtin_prefetch(w[j] + k + kPrefetchBytes / 2, 0, 3);
    __m512bh wv[R];
    for (int j = 0; j < R; ++j) wv[j] = Load32(w[j] + k);
    for (int m = 0; m < M; ++m) {
      const __m512bh xv = Load32(x[m] + k);
      for (int j = 0; j < R; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], xv, wv[j]);
    }
  }
  if (k < cols) {
    __m512bh wv[R];
    for (int j = 0; j < R; ++j) wv[j] = Load32Masked(w[j] + k, cols - k);
    for (int m = 0; m < M; ++m) {
      const __m512bh xv = Load32Masked(x[m] + k, cols - k);
      for (int j = 0; j < R; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], xv, wv[j]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < R; ++j) a.Store(t + m, r + j, _mm512_reduce_add_ps(acc[m][j]));
}

template <int R>
DSV2_AVX512BF16 void DotTokens(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r) {
  for (int64_t t = t0; t < t1; t += 4) {
    switch (std::min<int64_t>(4, t1 - t)) {
      case 4:
        DotTile<4, R>(a, t, r);
        break;
      case 3:
        DotTile<3, R>(a, t, r);
        break;
      case 2:
        DotTile<2, R>(a, t, r);
        break;
      default:
        DotTile<1, R>(a, t, r);
        break;
    }
  }
}

}  // namespace

DSV2_AVX512BF16 void DotAvx512Bf16(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r0,
                                   int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) DotTokens<4>(a, t0, t1, r);
  for (; r < r1; ++r) DotTokens<1>(a, t0, t1, r);
}

}  // namespace dsv2::matmul_internal
