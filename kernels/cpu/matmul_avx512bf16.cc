// The bf16 dot-product tile (vdpbf16ps, AVX512_BF16) for bfloat16 activations times bfloat16
// weights: each instruction multiplies 32 bf16 pairs exactly and adds them, two per float32
// lane, to the accumulators — no widening of the weights, half the bytes of x. Only called when
// the context's ISA is kAvx512Bf16. See matmul_internal.h.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/simd_intrinsics.h"
#include "kernels/cpu/transpose16.h"

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

template <int MaxM, int R>
DSV2_AVX512BF16 void DotTokens(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r) {
  using Fn = void (*)(const Bf16MatMul&, int64_t, int64_t);
  static constexpr Fn kTiles[] = {nullptr,       DotTile<1, R>, DotTile<2, R>,
                                  DotTile<3, R>, DotTile<4, R>, DotTile<5, R>,
                                  DotTile<6, R>, DotTile<7, R>, DotTile<8, R>};
  for (int64_t t = t0; t < t1; t += MaxM) kTiles[std::min<int64_t>(MaxM, t1 - t)](a, t, r);
}

// ---- Packed path: a slab of 32 rows, K in blocks of kPackedCols, tokens in micro-tiles ----

constexpr int kNr = 32;  // rows per slab: 2 zmm of float32 accumulators
constexpr int kMr = 12;  // tokens per micro-tile (24 accumulators)
constexpr int64_t kKc = kPackedCols;

// slab[p][j] = the bf16 pair (W[r0 + j, k0 + 2p], W[r0 + j, k0 + 2p + 1]) as one 32-bit word,
// for p < ceil(kc / 2), j < kNr; rows j >= nr and columns past kc are zero.
DSV2_AVX512BF16 void PackSlab(const WeightView& w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                              uint32_t* slab) {
  const int64_t pairs = (kc + 1) / 2;
  for (int g = 0; g < kNr / 16; ++g) {
    for (int64_t pp = 0; pp < pairs; pp += 16) {  // 16 pairs = 32 columns per load
      const int64_t cols_left = kc - 2 * pp;
      const __mmask32 mask = cols_left >= 32 ? ~__mmask32{0} : (__mmask32{1} << cols_left) - 1;
      __m512 v[16];  // the pairs as 32-bit lanes
      for (int i = 0; i < 16; ++i) {
        const int64_t j = g * 16 + i;
        const auto* row = reinterpret_cast<const uint16_t*>(w.RowPtr(r0 + j)) + k0 + 2 * pp;
        v[i] = _mm512_castsi512_ps(j < nr ? _mm512_maskz_loadu_epi16(mask, row)
                                          : _mm512_setzero_si512());
      }
      Transpose16(v);
      const int64_t n_p = std::min<int64_t>(16, pairs - pp);
      for (int i = 0; i < n_p; ++i) {
        _mm512_store_si512(slab + (pp + i) * kNr + g * 16, _mm512_castps_si512(v[i]));
      }
    }
  }
}

// The cache lines of the weight block the slab will pack next, prefetched a few at a time while
// the current block computes (packing from DRAM otherwise stalls on every row).
struct NextBlock {
  const uint8_t* row[kNr] = {};
  int nrows = 0;
  int64_t lines_per_row = 0;
  int64_t next = 0;  // lines issued so far

  void PrefetchOne() {
    if (next >= nrows * lines_per_row) return;
    __builtin_prefetch(row[next % nrows] + next / nrows * 64, 0, 3);
    ++next;
  }
};

// acc[m][j] (+)= Σ_k x[m, k] · slab over the block's pairs, for m < M tokens; y32: [M, kNr]
// float32 partial sums, read back unless `first`. The last pair of an odd kc has no second
// column: x's high half is masked off there (whatever lies past the row, even a NaN).
template <int M>
DSV2_AVX512BF16 void PackedTile(const uint16_t* x, int64_t xs, const uint32_t* slab, int64_t kc,
                                float* y32, bool first, NextBlock& next) {
  __m512 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) {
    acc0[m] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y32 + m * kNr);
    acc1[m] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y32 + m * kNr + 16);
  }
  const int64_t full_pairs = kc / 2;
  for (int64_t p = 0; p < full_pairs; ++p) {
    if (p % 2 == 0) next.PrefetchOne();
    const __m512bh w0 = reinterpret_cast<__m512bh>(_mm512_load_si512(slab + p * kNr));
    const __m512bh w1 = reinterpret_cast<__m512bh>(_mm512_load_si512(slab + p * kNr + 16));
    for (int m = 0; m < M; ++m) {
      uint32_t pair;
      std::memcpy(&pair, x + m * xs + 2 * p, sizeof(pair));
      const __m512bh xb = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair)));
      acc0[m] = _mm512_dpbf16_ps(acc0[m], xb, w0);
      acc1[m] = _mm512_dpbf16_ps(acc1[m], xb, w1);
    }
  }
  if (kc % 2 != 0) {
    const int64_t p = full_pairs;
    const __m512bh w0 = reinterpret_cast<__m512bh>(_mm512_load_si512(slab + p * kNr));
    const __m512bh w1 = reinterpret_cast<__m512bh>(_mm512_load_si512(slab + p * kNr + 16));
    for (int m = 0; m < M; ++m) {
      const uint32_t low = x[m * xs + 2 * p];
      const __m512bh xb = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(low)));
      acc0[m] = _mm512_dpbf16_ps(acc0[m], xb, w0);
      acc1[m] = _mm512_dpbf16_ps(acc1[m], xb, w1);
    }
  }
  for (int m = 0; m < M; ++m) {
    _mm512_storeu_ps(y32 + m * kNr, acc0[m]);
    _mm512_storeu_ps(y32 + m * kNr + 16, acc1[m]);
  }
}

template <int M>
DSV2_AVX512BF16 void PackedTileAt(const Bf16MatMul& a, int64_t t, int64_t k0, int64_t kc,
                                  const uint32_t* slab, float* y32, bool first, NextBlock& next) {
  PackedTile<M>(a.x + t * a.x_stride + k0, a.x_stride, slab, kc, y32, first, next);
}

// Tokens [t, t + m) for m < kMr.
DSV2_AVX512BF16 void PackedTail(const Bf16MatMul& a, int64_t t, int64_t m, int64_t k0, int64_t kc,
                                const uint32_t* slab, float* y32, bool first, NextBlock& next) {
  using Fn = void (*)(const Bf16MatMul&, int64_t, int64_t, int64_t, const uint32_t*, float*, bool,
                      NextBlock&);
  static constexpr Fn kTiles[] = {nullptr,         PackedTileAt<1>,  PackedTileAt<2>,
                                  PackedTileAt<3>, PackedTileAt<4>,  PackedTileAt<5>,
                                  PackedTileAt<6>, PackedTileAt<7>,  PackedTileAt<8>,
                                  PackedTileAt<9>, PackedTileAt<10>, PackedTileAt<11>};
  if (m > 0) kTiles[m](a, t, k0, kc, slab, y32, first, next);
}

DSV2_AVX512BF16 inline __mmask16 FirstLanes(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff)
                     : static_cast<__mmask16>((1u << std::max<int64_t>(count, 0)) - 1);
}

// y[t, r : r + nr] = act(v) or act(y + v), 16 lanes at a time (Bf16MatMul::Store's rounding,
// except that vcvtneps2bf16 flushes results below 2^-126 to zero).
DSV2_AVX512BF16 void StoreRow(const Bf16MatMul& a, int64_t t, int64_t r, int64_t nr,
                              const float* v) {
  for (int64_t j = 0; j < nr; j += 16) {
    const __mmask16 m = FirstLanes(nr - j);
    __m512 sum = _mm512_maskz_loadu_ps(m, v + j);
    if (a.y_float32) {
      float* y = static_cast<float*>(a.y) + t * a.y_stride + r + j;
      if (a.accumulate) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(m, y));
      _mm512_mask_storeu_ps(y, m, sum);
    } else {
      uint16_t* y = static_cast<uint16_t*>(a.y) + t * a.y_stride + r + j;
      if (a.accumulate) {
        const __m512i old = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, y));
        sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(old, 16)));
      }
      _mm256_mask_storeu_epi16(y, m, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(sum)));
    }
  }
}

}  // namespace

DSV2_AVX512BF16 void PackedAvx512Bf16(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r0,
                                      int64_t r1) {
  alignas(64) uint32_t slab[kKc / 2 * kNr];  // [kc / 2][kNr] bf16 pairs, 64 KiB
  // The float32 sums of the tokens × one slab's rows across the K blocks: [t1 - t0, kNr].
  thread_local std::vector<float> y32;
  y32.resize((t1 - t0) * kNr);
  const int64_t full_end = t0 + (t1 - t0) / kMr * kMr;
  for (int64_t r = r0; r < r1; r += kNr) {
    const int64_t nr = std::min<int64_t>(kNr, r1 - r);
    for (int64_t k0 = 0; k0 < a.w.cols; k0 += kKc) {
      const int64_t kc = std::min<int64_t>(kKc, a.w.cols - k0);
      const bool first = k0 == 0;
      PackSlab(a.w, r, nr, k0, kc, slab);
      // What comes next: this slab's next block, else the next slab's first (likely the next
      // tile this thread runs).
      NextBlock next;
      const int64_t next_r = k0 + kc < a.w.cols ? r : r + kNr;
      const int64_t next_k = k0 + kc < a.w.cols ? k0 + kc : 0;
      if (next_r < a.w.rows) {
        next.nrows = static_cast<int>(std::min<int64_t>(kNr, a.w.rows - next_r));
        for (int j = 0; j < next.nrows; ++j) next.row[j] = a.w.RowPtr(next_r + j) + 2 * next_k;
        next.lines_per_row = (std::min(kKc, a.w.cols - next_k) * 2 + 63) / 64;
      }
      for (int64_t t = t0; t < full_end; t += kMr) {
        PackedTile<kMr>(a.x + t * a.x_stride + k0, a.x_stride, slab, kc,
                        y32.data() + (t - t0) * kNr, first, next);
      }
      PackedTail(a, full_end, t1 - full_end, k0, kc, slab, y32.data() + (full_end - t0) * kNr,
                 first, next);
    }
    for (int64_t t = t0; t < t1; ++t) StoreRow(a, t, r, nr, y32.data() + (t - t0) * kNr);
  }
}

DSV2_AVX512BF16 void DotAvx512Bf16(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r0,
                                   int64_t r1) {
  // Tiles of 6 tokens × 4 rows (24 accumulators): 3-8% above 4 × 4 at 8-12 tokens, from DRAM.
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) DotTokens<6, 4>(a, t0, t1, r);
  for (; r < r1; ++r) DotTokens<8, 1>(a, t0, t1, r);
}

}  // namespace dsv2::matmul_internal
