// The SIMD dot kernel of MatMul on block-quantized weights, written once for two instruction
// sets: included by quant_dot_avx2.cc (vpmaddubsw) and quant_dot_avx512vnni.cc (vpdpbusd),
// each defining QUANT_TARGET (the function target attribute) and QUANT_VNNI (0 or 1) first.
// Everything here is in an anonymous namespace: each includer gets its own copy.
//
// One 32-element sub-block is one ymm of weight bytes q, decoded from the block by Decode<F>
// (the SIMD twin of quant::DecodeSubBlock, kernels/cpu/quant_blocks.cc). Its products with
// each token's int8 activations land as 8 int32 lanes — lanes 0-3 the first 16 elements,
// 4-7 the last 16, in both instruction sets — converted to float and multiplied by the
// (scale · activation scale) of their half. Offsets are summed apart against the activation
// half sums. Q8_0 and IQ4_NL hold signed values: vpdpbusd takes them as q + 128 (offset
// 128·d); vpmaddubsw, which saturates on such products, moves their sign onto x instead.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/simd_intrinsics.h"
#include "kernels/quant_blocks.h"

namespace dsv2::quant {
namespace {

constexpr bool IsSignedFormat(DType f) { return f == DType::kQ8_0 || f == DType::kIQ4_NL; }

// 32 bytes: bit e of `bits` → byte e = 0x10 (set) or 0.
QUANT_TARGET inline __m256i BitsToBytes16(uint32_t bits) {
#if QUANT_VNNI  // AVX-512BW: the bits are a byte mask already
  return _mm256_maskz_set1_epi8(static_cast<__mmask32>(bits), 0x10);
#endif
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(0x10));
}

// 16 bytes of nibbles → 32 bytes: the low nibbles, then the high ones.
QUANT_TARGET inline __m256i Nibbles(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

// Sub-block s of a block as 32 weight bytes: unsigned q, or for the signed formats the signed
// value (vpmaddubsw) / the value + 128 (vpdpbusd).
template <DType F>
QUANT_TARGET inline __m256i Decode(const uint8_t* block, int s) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  if constexpr (F == DType::kQ8_0) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
    return QUANT_VNNI ? _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))) : v;
  } else if constexpr (F == DType::kQ4_0) {
    return Nibbles(block + 2);
  } else if constexpr (F == DType::kIQ4_NL) {
    const __m256i levels = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlLevels)));
    const __m256i v = _mm256_shuffle_epi8(levels, Nibbles(block + 2));
    return QUANT_VNNI ? _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))) : v;
  } else if constexpr (F == DType::kQ5_0) {
    uint32_t qh;
    std::memcpy(&qh, block + 2, sizeof(qh));
    return _mm256_or_si256(Nibbles(block + 6), BitsToBytes16(qh));
  } else if constexpr (F == DType::kQ4_K || F == DType::kQ5_K) {
    constexpr bool kFive = F == DType::kQ5_K;
    const __m256i v = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(block + (kFive ? 48 : 16) + 32 * (s / 2)));
    __m256i q = _mm256_and_si256(s % 2 ? _mm256_srli_epi16(v, 4) : v, low4);
    if constexpr (kFive) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16));
      const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << s));
#if QUANT_VNNI
      // bit 4 of q is clear: adding 16 under the mask sets it
      q = _mm256_mask_add_epi8(q, _mm256_test_epi8_mask(qh, bit), q, _mm256_set1_epi8(0x10));
#else
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
      q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
#endif
    }
    return q;
  } else {  // Q6_K
    const int half = s / 4, k = s % 4;
    const __m256i ql =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 64 * half + (k % 2) * 32));
    const __m256i qh =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * half));
    const __m256i low = _mm256_and_si256(k < 2 ? ql : _mm256_srli_epi16(ql, 4), low4);
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
}

// The scales and offsets of the sub-blocks of one block (as quant::DecodeSubBlock gives them;
// the vpmaddubsw path takes the signed formats without their +128 offset).
template <DType F>
struct BlockScales {
  float scale[8][2];
  float offset[8][2];
};

// The half at p (F16C: one instruction, where the portable conversion branches).
QUANT_TARGET inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _cvtsh_ss(h);
}

template <DType F>
QUANT_TARGET inline void Scales(const uint8_t* block, BlockScales<F>* out) {
  if constexpr (F == DType::kQ4_K || F == DType::kQ5_K) {
    const float d = Half(block), dmin = Half(block + 2);
    for (int s = 0; s < 8; ++s) {
      int sc, m;
      ScaleMinK4(block + 4, s, &sc, &m);
      out->scale[s][0] = out->scale[s][1] = d * static_cast<float>(sc);
      out->offset[s][0] = out->offset[s][1] = dmin * static_cast<float>(m);
    }
  } else if constexpr (F == DType::kQ6_K) {
    const float d = Half(block + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(block + 192);
    for (int g = 0; g < 16; ++g) {
      out->scale[g / 2][g % 2] = d * static_cast<float>(sc[g]);
      out->offset[g / 2][g % 2] = 32.0f * out->scale[g / 2][g % 2];
    }
  } else {
    const float d = Half(block);
    constexpr float kZero = F == DType::kQ4_0   ? 8.0f
                            : F == DType::kQ5_0 ? 16.0f
                            : QUANT_VNNI        ? 128.0f
                                                : 0.0f;
    out->scale[0][0] = out->scale[0][1] = d;
    out->offset[0][0] = out->offset[0][1] = kZero * d;
  }
}

// 8 int32 lanes: Σ over groups of 4 bytes of q·x (q as Decode gives it, x int8).
template <DType F>
QUANT_TARGET inline __m256i DotBytes(__m256i q, __m256i x) {
#if QUANT_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x);
#else
  __m256i p;
  if constexpr (IsSignedFormat(F)) {
    p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
  } else {
    p = _mm256_maddubs_epi16(q, x);
  }
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
#endif
}

QUANT_TARGET inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

constexpr bool IsKFormat(DType f) {
  return f == DType::kQ4_K || f == DType::kQ5_K || f == DType::kQ6_K;
}

// Sub-block S of a K block, or the block S 32-element blocks on (the other formats).
template <DType F, int S>
QUANT_TARGET inline __m256i DecodeAt(const uint8_t* p) {
  if constexpr (IsKFormat(F)) return Decode<F>(p, S);
  return Decode<F>(p + S * BlockBytes(F), 0);
}

// 256 weights at a time — one K block, or eight 32-element blocks — with their sub-block sums
// gathered by a tree of vphaddd into two vectors laid out [lo half of sub-blocks 0-3 | hi half
// of 0-3] and the same for 4-7: one scale multiply-add per vector instead of one per
// sub-block. `scale_a`, `scale_b` are the weight scales in that layout; `off_lo`, `off_hi` the
// offsets of the 16 halves in memory order (as the activations' half sums lie).
struct Step {
  __m256i q[8];
  __m256 scale_a, scale_b, off_lo, off_hi;
  __m256 scale_lo, scale_hi;  // the scales of the 16 halves in memory order
};

QUANT_TARGET inline __m256 Lanes(__m256 v, int a, int b, int c, int d, int e, int f, int g, int h) {
  return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(a, b, c, d, e, f, g, h));
}

template <DType F>
QUANT_TARGET inline void LoadStep(const uint8_t* p, Step* st) {
  st->q[0] = DecodeAt<F, 0>(p);
  st->q[1] = DecodeAt<F, 1>(p);
  st->q[2] = DecodeAt<F, 2>(p);
  st->q[3] = DecodeAt<F, 3>(p);
  st->q[4] = DecodeAt<F, 4>(p);
  st->q[5] = DecodeAt<F, 5>(p);
  st->q[6] = DecodeAt<F, 6>(p);
  st->q[7] = DecodeAt<F, 7>(p);
  __m256 scale, offset;  // per sub-block, lanes 0-7 (Q6_K: per half, two sets)
  if constexpr (F == DType::kQ6_K) {
    const __m256 d = _mm256_set1_ps(Half(p + 208));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192));
    const __m256 lo = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
    const __m256 hi =
        _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
    // Halves g = 2s + h: lane i of the sums is sub-block i % 4, half i / 4.
    st->scale_a = Lanes(lo, 0, 2, 4, 6, 1, 3, 5, 7);
    st->scale_b = Lanes(hi, 0, 2, 4, 6, 1, 3, 5, 7);
    st->off_lo = _mm256_mul_ps(_mm256_set1_ps(32.0f), lo);
    st->off_hi = _mm256_mul_ps(_mm256_set1_ps(32.0f), hi);
    st->scale_lo = lo;
    st->scale_hi = hi;
    return;
  } else if constexpr (F == DType::kQ4_K || F == DType::kQ5_K) {
    // The 12 bytes as three words: scales 0-3 and mins 0-3 are the low 6 bits of words 0
    // and 1; scales and mins 4-7 are word 2's nibbles with the top 2 bits of words 0 and 1.
    uint32_t u[3];
    std::memcpy(u, p + 4, sizeof(u));
    const uint64_t sc =
        (u[0] & 0x3f3f3f3fu) |
        static_cast<uint64_t>((u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4)) << 32;
    const uint64_t m =
        (u[1] & 0x3f3f3f3fu) |
        static_cast<uint64_t>(((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4))
            << 32;
    scale = _mm256_mul_ps(
        _mm256_set1_ps(Half(p)),
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(sc)))));
    offset = _mm256_mul_ps(
        _mm256_set1_ps(Half(p + 2)),
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(m)))));
  } else {
    // The eight blocks' d, inserted lane by lane (eight 2-byte stores read back as one
    // 16-byte load would stall store forwarding).
    auto d = [&](int b) {
      uint16_t h;
      std::memcpy(&h, p + b * BlockBytes(F), 2);
      return static_cast<int>(h);
    };
    __m128i halves = _mm_cvtsi32_si128(d(0));
    halves = _mm_insert_epi16(halves, d(1), 1);
    halves = _mm_insert_epi16(halves, d(2), 2);
    halves = _mm_insert_epi16(halves, d(3), 3);
    halves = _mm_insert_epi16(halves, d(4), 4);
    halves = _mm_insert_epi16(halves, d(5), 5);
    halves = _mm_insert_epi16(halves, d(6), 6);
    halves = _mm_insert_epi16(halves, d(7), 7);
    scale = _mm256_cvtph_ps(halves);
    constexpr float kZero = F == DType::kQ4_0   ? 8.0f
                            : F == DType::kQ5_0 ? 16.0f
                            : QUANT_VNNI        ? 128.0f
                                                : 0.0f;
    offset = _mm256_mul_ps(_mm256_set1_ps(kZero), scale);
  }
  st->scale_a = Lanes(scale, 0, 1, 2, 3, 0, 1, 2, 3);
  st->scale_b = Lanes(scale, 4, 5, 6, 7, 4, 5, 6, 7);
  st->off_lo = Lanes(offset, 0, 0, 1, 1, 2, 2, 3, 3);
  st->off_hi = Lanes(offset, 4, 4, 5, 5, 6, 6, 7, 7);
  st->scale_lo = Lanes(scale, 0, 0, 1, 1, 2, 2, 3, 3);
  st->scale_hi = Lanes(scale, 4, 4, 5, 5, 6, 6, 7, 7);
}

// acc += the step's products with 256 activations at x (scales dx, half sums hs).
template <DType F>
QUANT_TARGET inline void DotStep(const Step& st, const int8_t* x, const float* dx, const float* hs,
                                 __m256* acc, __m256* off) {
  __m256i d[8];
  for (int s = 0; s < 8; ++s) {
    d[s] = DotBytes<F>(st.q[s], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * s)));
  }
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
  const __m128 dx_a = _mm_loadu_ps(dx), dx_b = _mm_loadu_ps(dx + 4);
  *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a),
                         _mm256_mul_ps(st.scale_a, _mm256_set_m128(dx_a, dx_a)), *acc);
  *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(b),
                         _mm256_mul_ps(st.scale_b, _mm256_set_m128(dx_b, dx_b)), *acc);
  *off = _mm256_fmadd_ps(st.off_lo, _mm256_loadu_ps(hs), *off);
  *off = _mm256_fmadd_ps(st.off_hi, _mm256_loadu_ps(hs + 8), *off);
}

// The 32-element blocks of a row left after its 256-weight steps, from block `first` (formats of
// 32-element blocks only; a K format's rows are whole steps): acc[m] += their products with
// token t + m, offsets[m] += their offsets against its half sums.
template <DType F, int T>
QUANT_TARGET inline void DotTailBlocks(const QuantMatMul& a, const uint8_t* row, int64_t t,
                                       int64_t first, __m256* acc, float* offsets) {
  if constexpr (!IsKFormat(F)) {
    const int64_t x_blocks = a.x.cols / 32;
    BlockScales<F> sc;
    for (int64_t xb = first; xb < x_blocks; ++xb) {
      const uint8_t* block = row + xb * BlockBytes(F);
      Scales<F>(block, &sc);
      const __m256i q = Decode<F>(block, 0);
      for (int m = 0; m < T; ++m) {
        const int64_t tm = t + m;
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x.q + tm * a.x.cols + 32 * xb));
        const __m256 dot = _mm256_cvtepi32_ps(DotBytes<F>(q, x));
        acc[m] = _mm256_fmadd_ps(dot, _mm256_set1_ps(sc.scale[0][0] * a.x.d[tm * x_blocks + xb]),
                                 acc[m]);
        const float* hs = a.x.half_sums + 2 * (tm * x_blocks + xb);
        offsets[m] += sc.offset[0][0] * (hs[0] + hs[1]);
      }
    }
  }
}

// y[t, r] for T tokens from t and one row r: steps of 256 weights, then (formats of 32-element
// blocks) the blocks left one at a time.
template <DType F, int T>
QUANT_TARGET void DotRowTokens(const QuantMatMul& a, int64_t t, int64_t r) {
  const int64_t x_blocks = a.x.cols / 32;
  const uint8_t* row = a.w.RowPtr(r);
  const int8_t* xq[T];
  const float* xd[T];
  const float* xs[T];
  __m256 acc[T], off[T];
  for (int m = 0; m < T; ++m) {
    xq[m] = a.x.q + (t + m) * a.x.cols;
    xd[m] = a.x.d + (t + m) * x_blocks;
    xs[m] = a.x.half_sums + 2 * (t + m) * x_blocks;
    acc[m] = _mm256_setzero_ps();
    off[m] = _mm256_setzero_ps();
  }
  const int64_t steps = a.w.cols / 256;
  constexpr int64_t kStepBytes = IsKFormat(F) ? BlockBytes(F) : 8 * BlockBytes(F);
  Step st;
  for (int64_t i = 0; i < steps; ++i) {
    LoadStep<F>(row + i * kStepBytes, &st);
    for (int m = 0; m < T; ++m) {
      DotStep<F>(st, xq[m] + 256 * i, xd[m] + 8 * i, xs[m] + 16 * i, &acc[m], &off[m]);
    }
  }
  float offsets[T] = {};
  DotTailBlocks<F, T>(a, row, t, 8 * steps, acc, offsets);
  for (int m = 0; m < T; ++m) {
    a.Store(t + m, r, HorizontalSum(acc[m]) - (HorizontalSum(off[m]) + offsets[m]));
  }
}

#if QUANT_VNNI
// The same step on zmm for several tokens: sub-blocks in pairs (one vpdpbusd on 64 bytes), the
// 64 lanes of four products gathered into 16 half sums by two rounds of unpack-and-add (no
// vphaddd), laid out lane 4j + k = sub-block 2k + j/2, half j % 2; the scales permuted to that
// layout once per step. About half the instructions per token of the ymm step.
struct Step512 {
  __m512i q[4];  // sub-blocks 2k and 2k + 1
  __m512 scale;  // per half, in the sums' layout
  __m512 off;    // per half, in memory order (as the activations' half sums)
};

QUANT_TARGET inline __m512 Join(__m256 lo, __m256 hi) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

QUANT_TARGET inline void Widen(const Step& st, Step512* z) {
  for (int k = 0; k < 4; ++k) {
    z->q[k] = _mm512_inserti64x4(_mm512_castsi256_si512(st.q[2 * k]), st.q[2 * k + 1], 1);
  }
  // Lane 4j + k of the sums is memory-order half 4k + j: a 4×4 transpose.
  const __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  z->scale = _mm512_permutexvar_ps(transpose, Join(st.scale_lo, st.scale_hi));
  z->off = Join(st.off_lo, st.off_hi);
}

QUANT_TARGET inline void DotStep512(const Step512& z, const int8_t* x, const float* dx,
                                    const float* hs, __m512* acc, __m512* off) {
  __m512i d[4];
  for (int k = 0; k < 4; ++k) {
    d[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z.q[k], _mm512_loadu_si512(x + 64 * k));
  }
  const __m512i u =
      _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
  const __m512i v =
      _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
  const __m512i sums = _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v));
  // dx of sub-block 2k + j/2 for lane 4j + k.
  const __m512i dx_lanes = _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 1, 3, 5, 7, 1, 3, 5, 7);
  const __m512 dxv = _mm512_permutexvar_ps(dx_lanes, _mm512_castps256_ps512(_mm256_loadu_ps(dx)));
  *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(z.scale, dxv), *acc);
  *off = _mm512_fmadd_ps(z.off, _mm512_loadu_ps(hs), *off);
}

// DotRowTokens on zmm: T tokens (up to 8) from t, one row r.
template <DType F, int T>
QUANT_TARGET void DotRowTokens512(const QuantMatMul& a, int64_t t, int64_t r) {
  const int64_t x_blocks = a.x.cols / 32;
  const uint8_t* row = a.w.RowPtr(r);
  __m512 acc[T], off[T];
  for (int m = 0; m < T; ++m) acc[m] = off[m] = _mm512_setzero_ps();
  const int64_t steps = a.w.cols / 256;
  constexpr int64_t kStepBytes = IsKFormat(F) ? BlockBytes(F) : 8 * BlockBytes(F);
  Step st;
  Step512 z;
  for (int64_t i = 0; i < steps; ++i) {
    LoadStep<F>(row + i * kStepBytes, &st);
    Widen(st, &z);
    for (int m = 0; m < T; ++m) {
      const int64_t tm = t + m;
      DotStep512(z, a.x.q + tm * a.x.cols + 256 * i, a.x.d + tm * x_blocks + 8 * i,
                 a.x.half_sums + 2 * tm * x_blocks + 16 * i, &acc[m], &off[m]);
    }
  }
  float offsets[T] = {};
  __m256 tail[T];
  for (int m = 0; m < T; ++m) tail[m] = _mm256_setzero_ps();
  DotTailBlocks<F, T>(a, row, t, 8 * steps, tail, offsets);
  for (int m = 0; m < T; ++m) {
    const float sum = _mm512_reduce_add_ps(acc[m]) + HorizontalSum(tail[m]);
    a.Store(t + m, r, sum - (_mm512_reduce_add_ps(off[m]) + offsets[m]));
  }
}
#endif

// fn(std::integral_constant<int, n>{}) for a token count 1 <= n <= N known only at run time.
template <int N, typename Fn>
QUANT_TARGET inline void WithTokenCount(int64_t n, const Fn& fn) {
  if constexpr (N >= 1) {
    if (n == N) return fn(std::integral_constant<int, N>{});
    WithTokenCount<N - 1>(n, fn);
  }
}

template <DType F>
QUANT_TARGET void DotTiles(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    int64_t t = t0;
#if QUANT_VNNI
    // One token of Q8_0 keeps the ymm step (measured as fast); the other formats gain on zmm
    // at one token too (Q4_K 40 -> 50 GB/s, Q5_0 31 -> 33).
    if (t1 - t0 > 1 || F != DType::kQ8_0) {
      for (; t + 8 <= t1; t += 8) DotRowTokens512<F, 8>(a, t, r);
      WithTokenCount<7>(t1 - t, [&](auto n) { DotRowTokens512<F, decltype(n)::value>(a, t, r); });
      continue;
    }
#endif
    for (; t + 4 <= t1; t += 4) DotRowTokens<F, 4>(a, t, r);
    WithTokenCount<3>(t1 - t, [&](auto n) { DotRowTokens<F, decltype(n)::value>(a, t, r); });
  }
}

// Rows [r0, r1) of w dequantized, w = scale·q − offset: each 16 values handed to
// store(element index in the slab, first 8, last 8).
template <DType F, typename Store>
QUANT_TARGET void DequantizeRowsWith(const WeightView& w, int64_t r0, int64_t r1,
                                     const Store& store) {
  constexpr int kSubs = IsKFormat(F) ? 8 : 1;
  const int64_t blocks = w.cols / BlockElements(F);
  BlockScales<F> sc;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.RowPtr(r);
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* block = row + b * BlockBytes(F);
      Scales<F>(block, &sc);
      for (int s = 0; s < kSubs; ++s) {
        const __m256i q = Decode<F>(block, s);
        const __m128i halves[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
        for (int g = 0; g < 2; ++g) {
          const __m256 scale = _mm256_set1_ps(sc.scale[s][g]);
          const __m256 offset = _mm256_set1_ps(sc.offset[s][g]);
          __m256 v0, v1;
          if constexpr (IsSignedFormat(F) && !QUANT_VNNI) {  // signed bytes, no offset
            v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(halves[g]));
            v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(halves[g], 8)));
          } else {
            v0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(halves[g]));
            v1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(halves[g], 8)));
          }
          store((r - r0) * w.cols + (b * kSubs + s) * 32 + 16 * g,
                _mm256_fmsub_ps(scale, v0, offset), _mm256_fmsub_ps(scale, v1, offset));
        }
      }
    }
  }
}

struct StoreFloat {
  float* out;
  QUANT_TARGET void operator()(int64_t at, __m256 a, __m256 b) const {
    _mm256_storeu_ps(out + at, a);
    _mm256_storeu_ps(out + at + 8, b);
  }
};

#if QUANT_VNNI
// bf16 bits, rounded to nearest even (as FloatToBf16 for finite values): the bf16 GEMM's slab
// without a float32 pass between.
struct StoreBf16 {
  uint16_t* out;
  QUANT_TARGET void operator()(int64_t at, __m256 a, __m256 b) const {
    const __m512i bits = _mm512_castps_si512(_mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded =
        _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + at),
                        _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16)));
  }
};
#endif

// fn(std::integral_constant<DType, F>{}) for the block format t (its kernels instantiated for
// F); false for a type without SIMD kernels.
template <typename Fn>
bool WithFormat(DType t, Fn&& fn) {
  switch (t) {
    case DType::kQ8_0:
      return fn(std::integral_constant<DType, DType::kQ8_0>{}), true;
    case DType::kQ4_0:
      return fn(std::integral_constant<DType, DType::kQ4_0>{}), true;
    case DType::kQ5_0:
      return fn(std::integral_constant<DType, DType::kQ5_0>{}), true;
    case DType::kIQ4_NL:
      return fn(std::integral_constant<DType, DType::kIQ4_NL>{}), true;
    case DType::kQ4_K:
      return fn(std::integral_constant<DType, DType::kQ4_K>{}), true;
    case DType::kQ5_K:
      return fn(std::integral_constant<DType, DType::kQ5_K>{}), true;
    case DType::kQ6_K:
      return fn(std::integral_constant<DType, DType::kQ6_K>{}), true;
    default:
      return false;
  }
}

#if QUANT_VNNI
void DequantizeBf16AnyFormat(const WeightView& w, int64_t r0, int64_t r1, uint16_t* out) {
  if (WithFormat(w.dtype, [&](auto f) {
        DequantizeRowsWith<decltype(f)::value>(w, r0, r1, StoreBf16{out});
      })) {
    return;
  }
  std::vector<float> row(w.cols);
  for (int64_t r = r0; r < r1; ++r) {
    DequantizeRow(w.dtype, w.RowPtr(r), row.data(), w.cols);
    for (int64_t k = 0; k < w.cols; ++k) out[(r - r0) * w.cols + k] = FloatToBf16(row[k]);
  }
}
#endif

void DequantizeAnyFormat(const WeightView& w, int64_t r0, int64_t r1, float* out) {
  if (WithFormat(w.dtype, [&](auto f) {
        DequantizeRowsWith<decltype(f)::value>(w, r0, r1, StoreFloat{out});
      })) {
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    DequantizeRow(w.dtype, w.RowPtr(r), out + (r - r0) * w.cols, w.cols);
  }
}

void DotAnyFormat(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  if (!WithFormat(a.w.dtype, [&](auto f) { DotTiles<decltype(f)::value>(a, t0, t1, r0, r1); })) {
    QuantDotScalar(a, t0, t1, r0, r1);
  }
}

}  // namespace
}  // namespace dsv2::quant
