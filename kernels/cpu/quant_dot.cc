// The activation quantizer and the scalar dot kernel of MatMul on block-quantized weights: the
// reference the SIMD kernels are tested against (kernels/cpu/quant_dot.h).
#include "kernels/cpu/quant_dot.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"
#include "kernels/quant_blocks.h"

namespace dsv2::quant {

QuantizedActs ActQuantizer::Quantize(const void* x, DType act, int64_t n, int64_t x_stride,
                                     int64_t cols) {
  DSV2_CHECK(cols % 32 == 0);
  const int64_t blocks = cols / 32;
  if (static_cast<int64_t>(q_.size()) < n * cols) q_.resize(n * cols);
  if (static_cast<int64_t>(d_.size()) < n * blocks) d_.resize(n * blocks);
  if (static_cast<int64_t>(half_sums_.size()) < 2 * n * blocks) half_sums_.resize(2 * n * blocks);
  float v[32];
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = t * x_stride + 32 * b;
      float amax = 0.0f;
      for (int e = 0; e < 32; ++e) {
        v[e] = act == DType::kBF16 ? Bf16ToFloat(static_cast<const uint16_t*>(x)[k0 + e])
                                   : static_cast<const float*>(x)[k0 + e];
        amax = std::max(amax, std::fabs(v[e]));
      }
      const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
      int8_t* q = &q_[t * cols + 32 * b];
      int sum[2] = {0, 0};
      for (int e = 0; e < 32; ++e) {
        q[e] = static_cast<int8_t>(std::lrintf(v[e] * id));
        sum[e / 16] += q[e];
      }
      d_[t * blocks + b] = d;
      half_sums_[2 * (t * blocks + b)] = d * static_cast<float>(sum[0]);
      half_sums_[2 * (t * blocks + b) + 1] = d * static_cast<float>(sum[1]);
    }
  }
  return {.q = q_.data(), .d = d_.data(), .half_sums = half_sums_.data(), .cols = cols};
}

void QuantMatMul::Store(int64_t t, int64_t r, float v) const {
  if (y_bf16) {
    uint16_t* p = static_cast<uint16_t*>(y) + t * y_stride + r;
    *p = FloatToBf16(accumulate ? Bf16ToFloat(*p) + v : v);
  } else {
    float* p = static_cast<float*>(y) + t * y_stride + r;
    *p = accumulate ? *p + v : v;
  }
}

void QuantDotScalar(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  const DType f = a.w.dtype;
  const int64_t blocks = a.w.cols / BlockElements(f), subs = SubBlocks(f);
  const int64_t x_blocks = a.x.cols / 32;
  SubBlock sb;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w.RowPtr(r);
    for (int64_t t = t0; t < t1; ++t) {
      const int8_t* xq = a.x.q + t * a.x.cols;
      const float* xd = a.x.d + t * x_blocks;
      const float* xs = a.x.half_sums + 2 * t * x_blocks;
      float sum = 0.0f, offsets = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int s = 0; s < subs; ++s) {
          DecodeSubBlock(f, row + b * BlockBytes(f), s, &sb);
          const int64_t xb = b * subs + s;  // the activations' 32-block
          int dot[2] = {0, 0};
          for (int e = 0; e < 32; ++e) dot[e / 16] += sb.q[e] * xq[32 * xb + e];
          sum += xd[xb] * (sb.scale[0] * static_cast<float>(dot[0]) +
                           sb.scale[1] * static_cast<float>(dot[1]));
          offsets += sb.offset[0] * xs[2 * xb] + sb.offset[1] * xs[2 * xb + 1];
        }
      }
      a.Store(t, r, sum - offsets);
    }
  }
}

void DequantizeRowsScalar(const WeightView& w, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r)
    DequantizeRow(w.dtype, w.RowPtr(r), out + (r - r0) * w.cols, w.cols);
}

}  // namespace dsv2::quant
