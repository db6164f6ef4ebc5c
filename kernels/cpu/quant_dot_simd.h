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

#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/simd_intrinsics.h"
#include "kernels/quant_blocks.h"

namespace dsv2::quant {
namespace {

constexpr bool IsSignedFormat(DType f) { return f == DType::kQ8_0 || f == DType::kIQ4_NL; }

// 32 bytes: bit e of `bits` → byte e = 0x10 (set) or 0.
QUANT_TARGET inline __m256i BitsToBytes16(uint32_t bits) {
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
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
      q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
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

template <DType F>
inline void Scales(const uint8_t* block, BlockScales<F>* out) {
  if constexpr (F == DType::kQ4_K || F == DType::kQ5_K) {
    const float d = HalfAt(block), dmin = HalfAt(block + 2);
    for (int s = 0; s < 8; ++s) {
      int sc, m;
      ScaleMinK4(block + 4, s, &sc, &m);
      out->scale[s][0] = out->scale[s][1] = d * static_cast<float>(sc);
      out->offset[s][0] = out->offset[s][1] = dmin * static_cast<float>(m);
    }
  } else if constexpr (F == DType::kQ6_K) {
    const float d = HalfAt(block + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(block + 192);
    for (int g = 0; g < 16; ++g) {
      out->scale[g / 2][g % 2] = d * static_cast<float>(sc[g]);
      out->offset[g / 2][g % 2] = 32.0f * out->scale[g / 2][g % 2];
    }
  } else {
    const float d = HalfAt(block);
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

// y[t, r] for T tokens from t and one row r.
template <DType F, int T>
QUANT_TARGET void DotRowTokens(const QuantMatMul& a, int64_t t, int64_t r) {
  constexpr int kSubs = F == DType::kQ4_K || F == DType::kQ5_K || F == DType::kQ6_K ? 8 : 1;
  const int64_t blocks = a.w.cols / BlockElements(F), x_blocks = a.x.cols / 32;
  const uint8_t* row = a.w.RowPtr(r);
  const int8_t* xq[T];
  const float* xd[T];
  const float* xs[T];
  __m256 acc[T];
  float offsets[T];
  for (int m = 0; m < T; ++m) {
    xq[m] = a.x.q + (t + m) * a.x.cols;
    xd[m] = a.x.d + (t + m) * x_blocks;
    xs[m] = a.x.half_sums + 2 * (t + m) * x_blocks;
    acc[m] = _mm256_setzero_ps();
    offsets[m] = 0.0f;
  }
  BlockScales<F> sc;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = row + b * BlockBytes(F);
    Scales<F>(block, &sc);
    for (int s = 0; s < kSubs; ++s) {
      const __m256i q = Decode<F>(block, s);
      const int64_t xb = b * kSubs + s;
      for (int m = 0; m < T; ++m) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[m] + 32 * xb));
        const __m256 dot = _mm256_cvtepi32_ps(DotBytes<F>(q, x));
        const float dx = xd[m][xb];
        __m256 scale;
        if constexpr (F == DType::kQ6_K) {
          scale =
              _mm256_set_m128(_mm_set1_ps(sc.scale[s][1] * dx), _mm_set1_ps(sc.scale[s][0] * dx));
        } else {
          scale = _mm256_set1_ps(sc.scale[s][0] * dx);
        }
        acc[m] = _mm256_fmadd_ps(dot, scale, acc[m]);
        offsets[m] += sc.offset[s][0] * xs[m][2 * xb] + sc.offset[s][1] * xs[m][2 * xb + 1];
      }
    }
  }
  for (int m = 0; m < T; ++m) a.Store(t + m, r, HorizontalSum(acc[m]) - offsets[m]);
}

template <DType F>
QUANT_TARGET void DotTiles(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    int64_t t = t0;
    for (; t + 4 <= t1; t += 4) DotRowTokens<F, 4>(a, t, r);
    switch (t1 - t) {
      case 3:
        DotRowTokens<F, 3>(a, t, r);
        break;
      case 2:
        DotRowTokens<F, 2>(a, t, r);
        break;
      case 1:
        DotRowTokens<F, 1>(a, t, r);
        break;
      default:
        break;
    }
  }
}

QUANT_TARGET void DotAnyFormat(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0,
                               int64_t r1) {
  switch (a.w.dtype) {
    case DType::kQ8_0:
      return DotTiles<DType::kQ8_0>(a, t0, t1, r0, r1);
    case DType::kQ4_0:
      return DotTiles<DType::kQ4_0>(a, t0, t1, r0, r1);
    case DType::kQ5_0:
      return DotTiles<DType::kQ5_0>(a, t0, t1, r0, r1);
    case DType::kIQ4_NL:
      return DotTiles<DType::kIQ4_NL>(a, t0, t1, r0, r1);
    case DType::kQ4_K:
      return DotTiles<DType::kQ4_K>(a, t0, t1, r0, r1);
    case DType::kQ5_K:
      return DotTiles<DType::kQ5_K>(a, t0, t1, r0, r1);
    case DType::kQ6_K:
      return DotTiles<DType::kQ6_K>(a, t0, t1, r0, r1);
    default:
      QuantDotScalar(a, t0, t1, r0, r1);
  }
}

}  // namespace
}  // namespace dsv2::quant
