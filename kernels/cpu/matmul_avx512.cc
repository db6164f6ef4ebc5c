// AVX-512 MatMul tiles (see matmul_internal.h). Compiled for any x86-64 with per-function
// target attributes; only called when the context's ISA is kAvx512.

#include <algorithm>
#include <cstdint>

#include "kernels/check.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/simd_intrinsics.h"
#include "kernels/cpu/transpose16.h"

#define DSV2_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

namespace dsv2::matmul_internal {
namespace {

// ---- Loads: 16 consecutive elements of a weight row (or x) as float32 -----------------------

template <DType D>
DSV2_AVX512 inline __m512 Load16(const uint8_t* row, int64_t k) {
  if constexpr (D == DType::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k));
    if constexpr (D == DType::kF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Lanes outside `m` read nothing and are zero.
template <DType D>
DSV2_AVX512 inline __m512 Load16Masked(const uint8_t* row, int64_t k, __mmask16 m) {
  if constexpr (D == DType::kF32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * k);
    if constexpr (D == DType::kF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Software prefetch this far ahead in each weight row: +10% for one thread streaming from DRAM.
constexpr int64_t kPrefetchBytes = 1024;

inline void Prefetch(const uint8_t* p) { __builtin_prefetch(p, 0, 3); }

DSV2_AVX512 inline __mmask16 FirstLanes(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff)
                     : static_cast<__mmask16>((1u << std::max<int64_t>(count, 0)) - 1);
}

// ---- Dot tile: M tokens × R rows, reduced along cols --------------------------------------

// y[m, r] (+)= Σ_k x[m, k] · W[r, k]  for m < M, r < R. x: [M, cols] rows xs apart;
// w: R rows ws bytes apart; y: [M, R] rows ys apart.
template <DType D, int M, int R>
DSV2_AVX512 void DotTile(const float* x, int64_t xs, const uint8_t* w, int64_t ws, int64_t cols,
                         float* y, int64_t ys, bool add) {
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    __m512 wv[R];
    if ((k * DTypeSize(D)) % 64 == 0) {  // once per cache line of each row
      for (int r = 0; r < R; ++r) Prefetch(w + r * ws + k * DTypeSize(D) + kPrefetchBytes);
    }
    for (int r = 0; r < R; ++r) wv[r] = Load16<D>(w + r * ws, k);
    for (int m = 0; m < M; ++m) {
      const __m512 xv = _mm512_loadu_ps(x + m * xs + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(wv[r], xv, acc[m][r]);
    }
  }
  if (k < cols) {
    const __mmask16 mask = FirstLanes(cols - k);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = Load16Masked<D>(w + r * ws, k, mask);
    for (int m = 0; m < M; ++m) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + m * xs + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(wv[r], xv, acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) StoreOut(y + m * ys + r, _mm512_reduce_add_ps(acc[m][r]), add);
}

template <DType D, int R>
DSV2_AVX512 void DotTokens(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r) {
  const int64_t ws = a.w.row_stride * DTypeSize(D);
  const uint8_t* w = a.w.RowPtr(r);
  for (int64_t t = t0; t < t1; t += 4) {
    const float* x = a.x + t * a.x_stride;
    float* y = a.y + t * a.y_stride + r;
    const int64_t xs = a.x_stride, ys = a.y_stride, cols = a.w.cols;
    switch (std::min<int64_t>(4, t1 - t)) {
      case 4:
        DotTile<D, 4, R>(x, xs, w, ws, cols, y, ys, a.accumulate);
        break;
      case 3:
        DotTile<D, 3, R>(x, xs, w, ws, cols, y, ys, a.accumulate);
        break;
      case 2:
        DotTile<D, 2, R>(x, xs, w, ws, cols, y, ys, a.accumulate);
        break;
      default:
        DotTile<D, 1, R>(x, xs, w, ws, cols, y, ys, a.accumulate);
        break;
    }
  }
}

template <DType D>
DSV2_AVX512 void DotRange(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) DotTokens<D, 4>(a, t0, t1, r);
  for (; r < r1; ++r) DotTokens<D, 1>(a, t0, t1, r);
}

// ---- Packed path --------------------------------------------------------------------------

constexpr int kNr = static_cast<int>(kAvx512SlabRows);  // rows per slab: 2 zmm
constexpr int kMr = 12;                                 // tokens per micro-tile
constexpr int64_t kKc = kPackedCols;

// slab[k][j] = float(W[r0 + j, k0 + k]) for k < kc, j < kNr; rows j >= nr are zero.
template <DType D>
DSV2_AVX512 void PackSlab(const WeightView& w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                          float* slab) {
  for (int g = 0; g < kNr / 16; ++g) {
    for (int64_t kk = 0; kk < kc; kk += 16) {
      const __mmask16 mask = FirstLanes(kc - kk);
      __m512 v[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t j = g * 16 + i;
        v[i] = j < nr ? Load16Masked<D>(w.RowPtr(r0 + j), k0 + kk, mask) : _mm512_setzero_ps();
      }
      Transpose16(v);
      const int64_t n_k = std::min<int64_t>(16, kc - kk);
      for (int i = 0; i < n_k; ++i) _mm512_store_ps(slab + (kk + i) * kNr + g * 16, v[i]);
    }
  }
}

// y[m, j] (+)= Σ_k x[m, k] · slab[k][j]  for m < M, j < nr.
template <int M>
DSV2_AVX512 void PackedTile(const float* x, int64_t xs, const float* slab, int64_t kc, float* y,
                            int64_t ys, int64_t nr, bool add) {
  __m512 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_load_ps(slab + k * kNr);
    const __m512 w1 = _mm512_load_ps(slab + k * kNr + 16);
    for (int m = 0; m < M; ++m) {
      const __m512 xb = _mm512_set1_ps(x[m * xs + k]);
      acc0[m] = _mm512_fmadd_ps(w0, xb, acc0[m]);
      acc1[m] = _mm512_fmadd_ps(w1, xb, acc1[m]);
    }
  }
  const __mmask16 m0 = FirstLanes(nr), m1 = FirstLanes(nr - 16);
  for (int m = 0; m < M; ++m) {
    float* yr = y + m * ys;
    if (add) {
      acc0[m] = _mm512_add_ps(acc0[m], _mm512_maskz_loadu_ps(m0, yr));
      acc1[m] = _mm512_add_ps(acc1[m], _mm512_maskz_loadu_ps(m1, yr + 16));
    }
    _mm512_mask_storeu_ps(yr, m0, acc0[m]);
    _mm512_mask_storeu_ps(yr + 16, m1, acc1[m]);
  }
}

template <int M>
DSV2_AVX512 void PackedTokens(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t nr,
                              int64_t k0, int64_t kc, const float* slab, bool add) {
  for (int64_t t = t0; t + M <= t1; t += M) {
    PackedTile<M>(a.x + t * a.x_stride + k0, a.x_stride, slab, kc, a.y + t * a.y_stride + r0,
                  a.y_stride, nr, add);
  }
}

DSV2_AVX512 void PackedTail(const F32MatMul& a, int64_t t, int64_t m, int64_t r0, int64_t nr,
                            int64_t k0, int64_t kc, const float* slab, bool add) {
  const float* x = a.x + t * a.x_stride + k0;
  float* y = a.y + t * a.y_stride + r0;
  const int64_t xs = a.x_stride, ys = a.y_stride;
  switch (m) {
    case 11:
      return PackedTile<11>(x, xs, slab, kc, y, ys, nr, add);
    case 10:
      return PackedTile<10>(x, xs, slab, kc, y, ys, nr, add);
    case 9:
      return PackedTile<9>(x, xs, slab, kc, y, ys, nr, add);
    case 8:
      return PackedTile<8>(x, xs, slab, kc, y, ys, nr, add);
    case 7:
      return PackedTile<7>(x, xs, slab, kc, y, ys, nr, add);
    case 6:
      return PackedTile<6>(x, xs, slab, kc, y, ys, nr, add);
    case 5:
      return PackedTile<5>(x, xs, slab, kc, y, ys, nr, add);
    case 4:
      return PackedTile<4>(x, xs, slab, kc, y, ys, nr, add);
    case 3:
      return PackedTile<3>(x, xs, slab, kc, y, ys, nr, add);
    case 2:
      return PackedTile<2>(x, xs, slab, kc, y, ys, nr, add);
    case 1:
      return PackedTile<1>(x, xs, slab, kc, y, ys, nr, add);
    default:
      return;
  }
}

template <DType D>
DSV2_AVX512 void PackedRange(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  alignas(64) float slab[kKc * kNr];  // [kc][kNr], 32 KiB
  const int64_t full_end = t0 + (t1 - t0) / kMr * kMr;
  for (int64_t r = r0; r < r1; r += kNr) {
    const int64_t nr = std::min<int64_t>(kNr, r1 - r);
    for (int64_t k0 = 0; k0 < a.w.cols; k0 += kKc) {
      const int64_t kc = std::min<int64_t>(kKc, a.w.cols - k0);
      const bool add = k0 > 0 || a.accumulate;
      PackSlab<D>(a.w, r, nr, k0, kc, slab);
      PackedTokens<kMr>(a, t0, full_end, r, nr, k0, kc, slab, add);
      PackedTail(a, full_end, t1 - full_end, r, nr, k0, kc, slab, add);
    }
  }
}

}  // namespace

void DotAvx512(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  switch (a.w.dtype) {
    case DType::kBF16:
      return DotRange<DType::kBF16>(a, t0, t1, r0, r1);
    case DType::kF16:
      return DotRange<DType::kF16>(a, t0, t1, r0, r1);
    case DType::kF32:
      return DotRange<DType::kF32>(a, t0, t1, r0, r1);
    default:
      DSV2_CHECK_MSG(false, "MatMul: weight dtype must be F32, F16 or BF16");
  }
}

void PackedAvx512(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  switch (a.w.dtype) {
    case DType::kBF16:
      return PackedRange<DType::kBF16>(a, t0, t1, r0, r1);
    case DType::kF16:
      return PackedRange<DType::kF16>(a, t0, t1, r0, r1);
    case DType::kF32:
      return PackedRange<DType::kF32>(a, t0, t1, r0, r1);
    default:
      DSV2_CHECK_MSG(false, "MatMul: weight dtype must be F32, F16 or BF16");
  }
}

}  // namespace dsv2::matmul_internal
