// QuantizeRow: float32 weights into the block formats of kernels/quant_blocks.h. Our own
// choices of scales (the formats fix only how blocks decode): symmetric formats take the scale
// that maps the largest magnitude to the widest level; the K formats fit each sub-block's
// (scale, min) by alternating least squares, then quantize the scales themselves.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/check.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

int Nearest(float v) { return static_cast<int>(std::lrintf(v)); }

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = FloatToF16(v);
  std::memcpy(p, &h, sizeof(h));
}
float RoundedHalf(float v) { return F16ToFloat(FloatToF16(v)); }

// The element of largest magnitude, with its sign.
float SignedMax(const float* x, int n) {
  float best = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(best)) best = x[i];
  }
  return best;
}

// Q4_0 / Q5_0: w = d·(q − zero) with q in [0, 2·zero); the largest magnitude maps to −zero.
void QuantizeZeroPoint(const float* x, uint8_t* block, int zero) {
  const float d = RoundedHalf(SignedMax(x, 32) / static_cast<float>(-zero));
  PutHalf(block, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  uint8_t q[32];
  for (int e = 0; e < 32; ++e)
    q[e] = static_cast<uint8_t>(std::clamp(Nearest(x[e] * id) + zero, 0, 2 * zero - 1));
  uint8_t* qs = block + (zero == 16 ? 6 : 2);
  uint32_t qh = 0;
  for (int e = 0; e < 16; ++e) {
    qs[e] = static_cast<uint8_t>((q[e] & 0x0F) | ((q[e + 16] & 0x0F) << 4));
    qh |= static_cast<uint32_t>(q[e] >> 4) << e;
    qh |= static_cast<uint32_t>(q[e + 16] >> 4) << (e + 16);
  }
  if (zero == 16) std::memcpy(block + 2, &qh, sizeof(qh));
}

void QuantizeQ8_0(const float* x, uint8_t* block) {
  float amax = 0.0f;
  for (int e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(x[e]));
  const float d = RoundedHalf(amax / 127.0f);
  PutHalf(block, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int e = 0; e < 32; ++e) {
    block[2 + e] =
        static_cast<uint8_t>(static_cast<int8_t>(std::clamp(Nearest(x[e] * id), -127, 127)));
  }
}

int NearestLevel(float v) {
  int best = 0;
  for (int i = 1; i < 16; ++i) {
    if (std::fabs(kIq4NlLevels[i] - v) < std::fabs(kIq4NlLevels[best] - v)) best = i;
  }
  return best;
}

void QuantizeIq4Nl(const float* x, uint8_t* block) {
  // Start from the scale that maps the largest magnitude to the −127 level, then refit the
  // scale to the chosen levels by least squares; keep whichever errs less.
  float best_d = SignedMax(x, 32) / -127.0f, best_err = INFINITY;
  float d = best_d;
  for (int round = 0; round < 2 && d != 0.0f; ++round) {
    const float hd = RoundedHalf(d);
    float err = 0.0f, sxl = 0.0f, sll = 0.0f;
    for (int e = 0; e < 32; ++e) {
      const float l = kIq4NlLevels[NearestLevel(x[e] / hd)];
      err += (x[e] - hd * l) * (x[e] - hd * l);
      sxl += x[e] * l;
      sll += l * l;
    }
    if (err < best_err) best_err = err, best_d = hd;
    d = sll > 0.0f ? sxl / sll : 0.0f;
  }
  best_d = RoundedHalf(best_d);
  PutHalf(block, best_d);
  for (int e = 0; e < 16; ++e) {
    const int lo = best_d != 0.0f ? NearestLevel(x[e] / best_d) : 8;
    const int hi = best_d != 0.0f ? NearestLevel(x[e + 16] / best_d) : 8;
    block[2 + e] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// Fits w = a·q − b (q in [0, levels], b >= 0) to 32 values: min/max, then alternating least
// squares (levels for the fit, the fit for the levels) while the squared error falls.
void FitScaleMin(const float* x, int levels, float* a_out, float* b_out) {
  float lo = 0.0f, hi = 0.0f;
  for (int e = 0; e < 32; ++e) lo = std::min(lo, x[e]), hi = std::max(hi, x[e]);
  float a = (hi - lo) / static_cast<float>(levels), b = -lo;
  auto error = [&](float sa, float sb) {
    float err = 0.0f;
    for (int e = 0; e < 32; ++e) {
      const int q = sa > 0 ? std::clamp(Nearest((x[e] + sb) / sa), 0, levels) : 0;
      err += (x[e] - (sa * q - sb)) * (x[e] - (sa * q - sb));
    }
    return err;
  };
  float best = error(a, b);
  for (int round = 0; round < 4 && a > 0.0f; ++round) {
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int e = 0; e < 32; ++e) {
      const double q = std::clamp(Nearest((x[e] + b) / a), 0, levels);
      sq += q, sqq += q * q, sx += x[e], sqx += q * x[e];
    }
    const double det = 32 * sqq - sq * sq;
    if (det <= 0) break;
    const float na = static_cast<float>((32 * sqx - sq * sx) / det);
    const float nb = std::max(0.0f, static_cast<float>((sq * sqx - sqq * sx) / det));
    if (na <= 0.0f) break;
    const float err = error(na, nb);
    if (err >= best) break;
    best = err, a = na, b = nb;
  }
  *a_out = a, *b_out = b;
}

void PackScaleMinK4(const int* sc, const int* m, uint8_t* scales) {
  std::memset(scales, 0, 12);
  for (int s = 0; s < 8; ++s) {
    if (s < 4) {
      scales[s] = static_cast<uint8_t>(sc[s]);
      scales[s + 4] = static_cast<uint8_t>(m[s]);
    } else {
      scales[s + 4] = static_cast<uint8_t>((sc[s] & 0x0F) | ((m[s] & 0x0F) << 4));
      scales[s - 4] |= static_cast<uint8_t>((sc[s] >> 4) << 6);
      scales[s] |= static_cast<uint8_t>((m[s] >> 4) << 6);
    }
  }
}

// Q4_K (levels 15) and Q5_K (31).
void QuantizeK(const float* x, uint8_t* block, bool five) {
  const int levels = five ? 31 : 15;
  float a[8], b[8], max_a = 0.0f, max_b = 0.0f;
  for (int s = 0; s < 8; ++s) {
    FitScaleMin(x + 32 * s, levels, &a[s], &b[s]);
    max_a = std::max(max_a, a[s]), max_b = std::max(max_b, b[s]);
  }
  const float d = RoundedHalf(max_a / 63.0f), dmin = RoundedHalf(max_b / 63.0f);
  PutHalf(block, d);
  PutHalf(block + 2, dmin);
  int sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = d > 0.0f ? std::clamp(Nearest(a[s] / d), 0, 63) : 0;
    m[s] = dmin > 0.0f ? std::clamp(Nearest(b[s] / dmin), 0, 63) : 0;
  }
  PackScaleMinK4(sc, m, block + 4);
  uint8_t* qh = block + 16;
  uint8_t* qs = block + (five ? 48 : 16);
  if (five) std::memset(qh, 0, 32);
  for (int s = 0; s < 8; ++s) {
    const float scale = d * static_cast<float>(sc[s]), offset = dmin * static_cast<float>(m[s]);
    for (int e = 0; e < 32; ++e) {
      const int q =
          scale > 0.0f ? std::clamp(Nearest((x[32 * s + e] + offset) / scale), 0, levels) : 0;
      uint8_t& byte = qs[32 * (s / 2) + e];
      if (s % 2 == 0)
        byte = static_cast<uint8_t>(q & 0x0F);
      else
        byte |= static_cast<uint8_t>((q & 0x0F) << 4);
      if (five) qh[e] |= static_cast<uint8_t>((q >> 4) << s);
    }
  }
}

void QuantizeQ6K(const float* x, uint8_t* block) {
  float scale[16], max_abs = 0.0f;
  for (int g = 0; g < 16; ++g) {
    scale[g] = SignedMax(x + 16 * g, 16) / -32.0f;
    max_abs = std::max(max_abs, std::fabs(scale[g]));
  }
  const float d = RoundedHalf(max_abs / 127.0f);
  PutHalf(block + 208, d);
  auto* scales = reinterpret_cast<int8_t*>(block + 192);
  uint8_t* ql = block;
  uint8_t* qh = block + 128;
  std::memset(block, 0, 192);
  for (int g = 0; g < 16; ++g) {
    scales[g] = static_cast<int8_t>(d > 0.0f ? std::clamp(Nearest(scale[g] / d), -127, 127) : 0);
    const float step = d * scales[g];
    for (int i = 0; i < 16; ++i) {
      const int e = 16 * g + i;  // element of the block
      const int q = step != 0.0f ? std::clamp(Nearest(x[e] / step) + 32, 0, 63) : 32;
      const int half = e / 128, k = (e % 128) / 32, l = e % 32;
      uint8_t& low = ql[64 * half + (k % 2) * 32 + l];
      low |= static_cast<uint8_t>((q & 0x0F) << (k < 2 ? 0 : 4));
      qh[32 * half + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
    }
  }
}

}  // namespace

void QuantizeRow(DType t, const float* src, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  if (!IsBlockQuantized(t)) {
    for (int64_t i = 0; i < n; ++i) {
      switch (t) {
        case DType::kF32:
          std::memcpy(out + 4 * i, &src[i], 4);
          break;
        case DType::kBF16: {
          const uint16_t h = FloatToBf16(src[i]);
          std::memcpy(out + 2 * i, &h, 2);
          break;
        }
        case DType::kF16: {
          const uint16_t h = FloatToF16(src[i]);
          std::memcpy(out + 2 * i, &h, 2);
          break;
        }
        default:
          DSV2_CHECK_MSG(false, "QuantizeRow: not a float or block-quantized type");
      }
    }
    return;
  }
  const int64_t per_block = BlockElements(t);
  DSV2_CHECK(n % per_block == 0);
  for (int64_t b = 0; b < n / per_block; ++b) {
    const float* x = src + b * per_block;
    uint8_t* block = out + b * BlockBytes(t);
    switch (t) {
      case DType::kQ8_0:
        QuantizeQ8_0(x, block);
        break;
      case DType::kQ4_0:
        QuantizeZeroPoint(x, block, 8);
        break;
      case DType::kQ5_0:
        QuantizeZeroPoint(x, block, 16);
        break;
      case DType::kIQ4_NL:
        QuantizeIq4Nl(x, block);
        break;
      case DType::kQ4_K:
      case DType::kQ5_K:
        QuantizeK(x, block, t == DType::kQ5_K);
        break;
      case DType::kQ6_K:
        QuantizeQ6K(x, block);
        break;
      default:
        DSV2_CHECK_MSG(false, "QuantizeRow: unknown type");
    }
  }
}

}  // namespace dsv2
