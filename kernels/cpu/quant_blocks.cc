// Scalar conversions of the block-quantized formats (kernels/quant_blocks.h): dequantize any
// row, and the decoder of one 32-element sub-block that the integer dot kernels share.
#include "kernels/quant_blocks.h"

#include <strings.h>

#include <cmath>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/quant_dot.h"

namespace dsv2 {

uint16_t FloatToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow → inf
  if (abs < 0x38800000u) {  // subnormal half (or zero): round |f| / 2^-24 to an integer
    float a;
    std::memcpy(&a, &abs, sizeof(a));
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

bool ParseQuantType(const char* name, DType* t) {
  static constexpr DType kTypes[] = {DType::kQ4_0, DType::kQ5_0, DType::kQ8_0,  DType::kQ4_K,
                                     DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL};
  for (DType q : kTypes) {
    if (strcasecmp(name, DTypeName(q).data()) == 0) {
      *t = q;
      return true;
    }
  }
  return false;
}

namespace quant {

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return F16ToFloat(h);
}

int SubBlocks(DType t) { return static_cast<int>(BlockElements(t) / 32); }

void DecodeSubBlock(DType t, const uint8_t* block, int s, SubBlock* out) {
  uint8_t* q = out->q;
  switch (t) {
    case DType::kQ8_0: {
      const float d = HalfAt(block);
      for (int e = 0; e < 32; ++e) q[e] = static_cast<uint8_t>(block[2 + e] ^ 0x80u);
      out->scale[0] = out->scale[1] = d;
      out->offset[0] = out->offset[1] = 128.0f * d;
      return;
    }
    case DType::kQ4_0:
    case DType::kIQ4_NL: {
      const float d = HalfAt(block);
      const uint8_t* qs = block + 2;
      for (int e = 0; e < 16; ++e) {
        q[e] = qs[e] & 0x0F;
        q[e + 16] = qs[e] >> 4;
      }
      out->scale[0] = out->scale[1] = d;
      if (t == DType::kQ4_0) {
        out->offset[0] = out->offset[1] = 8.0f * d;
      } else {
        for (int e = 0; e < 32; ++e) q[e] = static_cast<uint8_t>(kIq4NlLevels[q[e]] + 128);
        out->offset[0] = out->offset[1] = 128.0f * d;
      }
      return;
    }
    case DType::kQ5_0: {
      const float d = HalfAt(block);
      uint32_t qh;
      std::memcpy(&qh, block + 2, sizeof(qh));
      const uint8_t* qs = block + 6;
      for (int e = 0; e < 16; ++e) {
        q[e] = static_cast<uint8_t>((qs[e] & 0x0F) | (((qh >> e) & 1u) << 4));
        q[e + 16] = static_cast<uint8_t>((qs[e] >> 4) | (((qh >> (e + 16)) & 1u) << 4));
      }
      out->scale[0] = out->scale[1] = d;
      out->offset[0] = out->offset[1] = 16.0f * d;
      return;
    }
    case DType::kQ4_K:
    case DType::kQ5_K: {
      const float d = HalfAt(block), dmin = HalfAt(block + 2);
      int sc, m;
      ScaleMinK4(block + 4, s, &sc, &m);
      const bool five = t == DType::kQ5_K;
      const uint8_t* qs = block + (five ? 48 : 16) + 32 * (s / 2);
      const int shift = (s % 2) * 4;
      for (int e = 0; e < 32; ++e) {
        q[e] = (qs[e] >> shift) & 0x0F;
        if (five) q[e] |= static_cast<uint8_t>(((block[16 + e] >> s) & 1u) << 4);
      }
      out->scale[0] = out->scale[1] = d * static_cast<float>(sc);
      out->offset[0] = out->offset[1] = dmin * static_cast<float>(m);
      return;
    }
    case DType::kQ6_K: {
      const float d = HalfAt(block + 208);
      const int half = s / 4, k = s % 4;  // elements l + 32k of half `half`
      const uint8_t* ql = block + 64 * half + (k % 2) * 32;
      const uint8_t* qh = block + 128 + 32 * half;
      const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
      for (int e = 0; e < 32; ++e) {
        const int low = k < 2 ? (ql[e] & 0x0F) : (ql[e] >> 4);
        q[e] = static_cast<uint8_t>(low | (((qh[e] >> (2 * k)) & 3) << 4));
      }
      for (int g = 0; g < 2; ++g) {
        out->scale[g] = d * static_cast<float>(scales[2 * s + g]);
        out->offset[g] = 32.0f * out->scale[g];
      }
      return;
    }
    default:
      DSV2_CHECK_MSG(false, "DecodeSubBlock: not a block-quantized type");
  }
}

}  // namespace quant

void DequantizeRow(DType t, const void* src, float* dst, int64_t n) {
  if (!IsBlockQuantized(t)) {
    for (int64_t i = 0; i < n; ++i) dst[i] = LoadAsFloat(src, t, i);
    return;
  }
  const int64_t per_block = BlockElements(t);
  DSV2_CHECK(n % per_block == 0);
  const auto* bytes = static_cast<const uint8_t*>(src);
  quant::SubBlock sb;
  for (int64_t b = 0; b < n / per_block; ++b) {
    const uint8_t* block = bytes + b * BlockBytes(t);
    for (int s = 0; s < quant::SubBlocks(t); ++s) {
      quant::DecodeSubBlock(t, block, s, &sb);
      float* out = dst + b * per_block + 32 * s;
      for (int e = 0; e < 32; ++e) {
        const int g = e / 16;
        out[e] = sb.scale[g] * static_cast<float>(sb.q[e]) - sb.offset[g];
      }
    }
  }
}

}  // namespace dsv2
