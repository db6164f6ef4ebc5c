// Internal to the CPU MatMul on block-quantized weights (kernels/quant_blocks.h).
//
// Every format is a run of 32-element sub-blocks whose weights are w = scale·q − offset per half
// of 16, with q an unsigned byte. The activations x are quantized per 32 elements to int8:
// x ≈ dx·xq. So one row's product is
//   y = Σ_sub dx·(scale_lo·Σ_lo q·xq + scale_hi·Σ_hi q·xq) − Σ_half offset·(dx·Σ_half xq)
// — integer dot products of bytes (vpdpbusd, vpmaddubsw, or plain C++), one float multiply-add
// per half sub-block, and the offsets against precomputed activation sums.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/matmul.h"

namespace dsv2::quant {

struct SubBlock {
  uint8_t q[32];
  float scale[2];   // elements [0, 16) and [16, 32)
  float offset[2];  // w = scale·q − offset
};

float HalfAt(const uint8_t* p);
int SubBlocks(DType t);  // 32-element sub-blocks per block
// Sub-block s of `block` (format t) decoded (the scalar reference of every kernel's decoder).
void DecodeSubBlock(DType t, const uint8_t* block, int s, SubBlock* out);

// n rows of `cols` activations (cols a multiple of 32) quantized per 32 to int8:
// x[t, 32b + e] ≈ d[t, b] · q[t, 32b + e]; half_sums[t, h] = d · Σ q over elements
// [16h, 16h + 16). Rows `stride` elements apart in each array: q cols, d cols/32, sums cols/16.
struct QuantizedActs {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const float* half_sums = nullptr;
  int64_t cols = 0;
};

// Owns the storage of QuantizedActs (reused between calls: grows only).
class ActQuantizer {
 public:
  // x: float32 or bfloat16 (act) rows x_stride elements apart. The result lives until the next
  // call.
  QuantizedActs Quantize(const void* x, DType act, int64_t n, int64_t x_stride, int64_t cols);

 private:
  std::vector<int8_t> q_;
  std::vector<float> d_, half_sums_;
};

// One operand: quantized weights w [rows, cols] times quantized activations [n, cols].
// y is float32 or bfloat16 (y_float32 or not), rounded once: y = (accumulate ? y : 0) + x·Wᵀ.
struct QuantMatMul {
  QuantizedActs x;
  int64_t n = 0;
  WeightView w;
  void* y = nullptr;
  int64_t y_stride = 0;
  bool y_bf16 = false;
  bool accumulate = false;

  void Store(int64_t t, int64_t r, float v) const;
};

// y[t0:t1, r0:r1] of a QuantMatMul: scalar (any CPU), AVX2, AVX-512 VNNI.
void QuantDotScalar(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);
void QuantDotAvx2(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);
void QuantDotAvx512Vnni(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);

// Rows [r0, r1) of a quantized weight as float32, w.cols apart in `out` (the GEMM path of larger
// n dequantizes a slab at a time): scalar (quant_blocks.cc), AVX2, AVX-512.
void DequantizeRowsScalar(const WeightView& w, int64_t r0, int64_t r1, float* out);
void DequantizeRowsAvx2(const WeightView& w, int64_t r0, int64_t r1, float* out);
void DequantizeRowsAvx512Vnni(const WeightView& w, int64_t r0, int64_t r1, float* out);
// The same straight to bf16 bits (AVX-512 VNNI level), rounded to nearest even.
void DequantizeRowsBf16Avx512(const WeightView& w, int64_t r0, int64_t r1, uint16_t* out);

}  // namespace dsv2::quant
