// AVX2 + FMA + F16C MatMul tiles (see matmul_internal.h). Compiled for any x86-64 with
// per-function target attributes; only called when the context's ISA is kAvx2.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/check.h"
#include "kernels/cpu/matmul_internal.h"

#define DSV2_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace dsv2::matmul_internal {
namespace {

// 8 consecutive elements of a weight row as float32.
template <DType D>
DSV2_AVX2 inline __m256 Load8(const uint8_t* row, int64_t k) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
    if constexpr (D == DType::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// Software prefetch this far ahead in each weight row (as in matmul_avx512.cc).
constexpr int64_t kPrefetchBytes = 1024;

inline void Prefetch(const uint8_t* p) { __builtin_prefetch(p, 0, 3); }

DSV2_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- Dot tile: M tokens × R rows, reduced along cols --------------------------------------

// y[m, r] (+)= Σ_k x[m, k] · W[r, k]  for m < M, r < R; the last cols % 8 in scalar.
template <DType D, int M, int R>
DSV2_AVX2 void DotTile(const float* x, int64_t xs, const uint8_t* w, int64_t ws, int64_t cols,
                       float* y, int64_t ys, bool add) {
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    __m256 wv[R];
    if ((k * DTypeSize(D)) % 64 == 0) {  // once per cache line of each row
      for (int r = 0; r < R; ++r) Prefetch(w + r * ws + k * DTypeSize(D) + kPrefetchBytes);
    }
    for (int r = 0; r < R; ++r) wv[r] = Load8<D>(w + r * ws, k);
    for (int m = 0; m < M; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * xs + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm256_fmadd_ps(wv[r], xv, acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int r = 0; r < R; ++r) {
      float s = HorizontalSum(acc[m][r]);
      for (int64_t kt = k; kt < cols; ++kt) s += x[m * xs + kt] * LoadAsFloat(w + r * ws, D, kt);
      StoreOut(y + m * ys + r, s, add);
    }
  }
}

template <DType D, int R>
DSV2_AVX2 void DotTokens(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r) {
  const int64_t ws = a.w.row_stride * DTypeSize(D);
  const uint8_t* w = a.w.RowPtr(r);
  // 2 tokens × 4 rows: 8 accumulators + 4 weights + x fit the 16 ymm registers.
  for (int64_t t = t0; t < t1; t += 2) {
    const float* x = a.x + t * a.x_stride;
    float* y = a.y + t * a.y_stride + r;
    if (t + 2 <= t1) {
      DotTile<D, 2, R>(x, a.x_stride, w, ws, a.w.cols, y, a.y_stride, a.accumulate);
    } else {
      DotTile<D, 1, R>(x, a.x_stride, w, ws, a.w.cols, y, a.y_stride, a.accumulate);
    }
  }
}

template <DType D>
DSV2_AVX2 void DotRange(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) DotTokens<D, 4>(a, t0, t1, r);
  for (; r < r1; ++r) DotTokens<D, 1>(a, t0, t1, r);
}

// ---- Packed path --------------------------------------------------------------------------

constexpr int kNr = static_cast<int>(kAvx2SlabRows);  // rows per slab: 2 ymm
constexpr int kMr = 6;                                // tokens per micro-tile
constexpr int64_t kKc = kPackedCols;

// In place: v[i][j] ← v[j][i] for an 8×8 float block held in 8 registers.
DSV2_AVX2 inline void Transpose8(__m256 v[8]) {
  __m256 t[8], s[8];
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = _mm256_unpacklo_ps(v[2 * p], v[2 * p + 1]);
    t[2 * p + 1] = _mm256_unpackhi_ps(v[2 * p], v[2 * p + 1]);
  }
  // s[4q + c], 128-bit lane L: column 4L + c of rows 4q..4q+3.
  for (int q = 0; q < 2; ++q) {
    s[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    s[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
    s[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    s[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
  }
  for (int c = 0; c < 4; ++c) {
    v[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
    v[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
  }
}

// slab[k][j] = float(W[r0 + j, k0 + k]) for k < kc, j < kNr; rows j >= nr are zero.
template <DType D>
DSV2_AVX2 void PackSlab(const WeightView& w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                        float* slab) {
  for (int g = 0; g < kNr / 8; ++g) {
    int64_t kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) {
        const int64_t j = g * 8 + i;
        v[i] = j < nr ? Load8<D>(w.RowPtr(r0 + j), k0 + kk) : _mm256_setzero_ps();
      }
      Transpose8(v);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(slab + (kk + i) * kNr + g * 8, v[i]);
    }
    for (; kk < kc; ++kk) {
      for (int i = 0; i < 8; ++i) {
        const int64_t j = g * 8 + i;
        slab[kk * kNr + j] = j < nr ? LoadAsFloat(w.RowPtr(r0 + j), D, k0 + kk) : 0.0f;
      }
    }
  }
}

// y[m, j] (+)= Σ_k x[m, k] · slab[k][j]  for m < M, j < nr.
template <int M>
DSV2_AVX2 void PackedTile(const float* x, int64_t xs, const float* slab, int64_t kc, float* y,
                          int64_t ys, int64_t nr, bool add) {
  __m256 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(slab + k * kNr);
    const __m256 w1 = _mm256_load_ps(slab + k * kNr + 8);
    for (int m = 0; m < M; ++m) {
      const __m256 xb = _mm256_broadcast_ss(x + m * xs + k);
      acc0[m] = _mm256_fmadd_ps(w0, xb, acc0[m]);
      acc1[m] = _mm256_fmadd_ps(w1, xb, acc1[m]);
    }
  }
  // Unrolled, so that the accumulators stay in registers inside the k loop.
  alignas(32) float tile[M][kNr];
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
    _mm256_store_ps(tile[m], acc0[m]);
    _mm256_store_ps(tile[m] + 8, acc1[m]);
  }
  for (int m = 0; m < M; ++m) {
    for (int64_t j = 0; j < nr; ++j) StoreOut(y + m * ys + j, tile[m][j], add);
  }
}

DSV2_AVX2 void PackedTiles(const F32MatMul& a, int64_t t, int64_t m, int64_t r0, int64_t nr,
                           int64_t k0, int64_t kc, const float* slab, bool add) {
  const float* x = a.x + t * a.x_stride + k0;
  float* y = a.y + t * a.y_stride + r0;
  const int64_t xs = a.x_stride, ys = a.y_stride;
  switch (m) {
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
DSV2_AVX2 void PackedRange(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  alignas(32) float slab[kKc * kNr];  // [kc][kNr], 16 KiB
  for (int64_t r = r0; r < r1; r += kNr) {
    const int64_t nr = std::min<int64_t>(kNr, r1 - r);
    for (int64_t k0 = 0; k0 < a.w.cols; k0 += kKc) {
      const int64_t kc = std::min<int64_t>(kKc, a.w.cols - k0);
      const bool add = k0 > 0 || a.accumulate;
      PackSlab<D>(a.w, r, nr, k0, kc, slab);
      for (int64_t t = t0; t < t1; t += kMr) {
        PackedTiles(a, t, std::min<int64_t>(kMr, t1 - t), r, nr, k0, kc, slab, add);
      }
    }
  }
}

}  // namespace

void DotAvx2(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
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

void PackedAvx2(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
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
