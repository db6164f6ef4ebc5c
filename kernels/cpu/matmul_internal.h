// Internal to the CPU MatMul: the per-ISA tile functions that cpu/matmul.cc schedules over
// threads. Each computes the block y[t0:t1, r0:r1] of one F32MatMul and touches nothing else.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/quant_dot.h"
#include "kernels/matmul.h"

namespace dsv2::matmul_internal {

// One operand of MatMulArgs (batch 1) with its float32 activations typed.
struct F32MatMul {
  const float* x = nullptr;  // [n, w.cols]
  int64_t x_stride = 0;
  int64_t n = 0;
  WeightView w;
  float* y = nullptr;  // [n, w.rows]
  int64_t y_stride = 0;
  bool accumulate = false;
};

// One operand with bfloat16 activations and bfloat16 weights (the vdpbf16ps path). y is
// float32 (y_float32) or bfloat16, rounded once: y = act(x·Wᵀ) or act(y + x·Wᵀ).
struct Bf16MatMul {
  const uint16_t* x = nullptr;  // [n, w.cols], bf16 bits
  int64_t x_stride = 0;
  int64_t n = 0;
  WeightView w;       // BF16
  void* y = nullptr;  // [n, w.rows]
  int64_t y_stride = 0;
  bool y_float32 = false;
  bool accumulate = false;

  void Store(int64_t t, int64_t r, float v) const {
    if (y_float32) {
      float* p = static_cast<float*>(y) + t * y_stride + r;
      *p = accumulate ? *p + v : v;
    } else {
      uint16_t* p = static_cast<uint16_t*>(y) + t * y_stride + r;
      *p = FloatToBf16(accumulate ? Bf16ToFloat(*p) + v : v);
    }
  }
};

// y[t0:t1, r0:r1] of a Bf16MatMul, with vdpbf16ps: products of bf16 pairs are exact in float32,
// summed in float32 (the order differs from the float32 kernels; both are within the rounding
// of one bf16 output).
void DotAvx512Bf16(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);
// The same for larger n: a slab of 32 rows × kPackedCols columns repacked as bf16 pairs (64 KiB,
// in L2), swept by 12-token micro-tiles, the float32 sums kept across column blocks and rounded
// once at the end.
void PackedAvx512Bf16(const Bf16MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);

// y[t0:t1, r0:r1] (+)= x[t0:t1, :] · W[r0:r1, :]ᵀ
using TileFn = void (*)(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);

// "Dot" kernels: a few rows × a few tokens at a time, W converted in registers and reduced
// along cols. Best for n == 1 and small n (each weight byte is read from memory once; tokens
// reuse a row group from L1/L2).
void DotAvx512(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);
void DotAvx2(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);

// "Packed" kernels for larger n: a slab of kSlabRows rows × kPackedCols cols is converted to
// float32 and transposed into a stack buffer (128 KiB for AVX-512, in L2), then a
// register-blocked micro-kernel sweeps the tokens [t0, t1) over it: each weight byte is read
// from memory once per token range. Slabs start at r0.
void PackedAvx512(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);
void PackedAvx2(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);

inline constexpr int64_t kAvx512SlabRows = 32;  // rows of W per packed slab (2 zmm)
inline constexpr int64_t kAvx2SlabRows = 16;    // rows of W per packed slab (2 ymm)
inline constexpr int64_t kPackedCols = 1024;    // cols of W per packed block

// The scalar dot kernel (any ISA), operand b of a MatMulArgs with float32 activations, and the
// argument checks: cpu/matmul.cc.
void DotScalar(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1);
F32MatMul Operand(const MatMulArgs& a, int64_t b);
void Validate(const F32MatMul& a);

// One operand of a MatMul cut into tiles that any thread may run in any order: groups of rows
// for the dot kernels, slab × token chunk for the packed ones. Every output element is computed
// by the same kernel call whatever the tiling, so results do not depend on it. Only for the
// direct paths: float32 activations, or bfloat16 activations and BF16 weights with
// AVX512_BF16 (others widen x first: cpu/matmul.cc).
class TiledProduct {
 public:
  static bool Direct(const CpuContext& ctx, const MatMulArgs& a);
  // Whether operand tiles of `a` (block-quantized weights) read x quantized to int8: the dot
  // kernel of small n. Larger n dequantizes a slab of W at a time for the float GEMMs.
  static bool NeedsQuantizedActs(const CpuContext& ctx, const MatMulArgs& a);
  // Operand b of `a` with x and y in `act` (the context's dtype, or float32 for copies the
  // caller widened), checked. An empty sum (no columns) is written here and has no tiles.
  // Block-quantized weights take x quantized per 32 elements: `acts`, made by the caller
  // (QuantizeActs) and kept alive while the tiles run.
  TiledProduct(const CpuContext& ctx, const MatMulArgs& a, int64_t b, DType act,
               const quant::QuantizedActs* acts = nullptr);
  int64_t tiles() const { return tiles_; }
  void Run(int64_t tile) const;

 private:
  enum class Kind : uint8_t {
    kF32Dot,
    kF32Packed,
    kBf16Dot,
    kBf16Packed,
    kQuantDot,
    kQuantPacked,  // a slab of quantized W dequantized, then the float32 or bf16 GEMM
  };
  void RunQuantPacked(int64_t t0, int64_t t1, int64_t r0, int64_t r1) const;
  Kind kind_ = Kind::kF32Dot;
  F32MatMul f32_;
  Bf16MatMul bf16_;
  quant::QuantMatMul quant_;
  void (*quant_tile_)(const quant::QuantMatMul&, int64_t, int64_t, int64_t, int64_t) = nullptr;
  void (*dequantize_)(const WeightView&, int64_t, int64_t, float*) = nullptr;
  bool quant_bf16_ = false;    // kQuantPacked: the bf16 GEMM (else float32)
  TileFn f32_tile_ = nullptr;  // the float32 dot or packed kernel
  int64_t n_ = 0, rows_ = 0;
  int64_t tile_rows_ = 0;     // dot: rows per tile; packed: rows per slab
  int64_t token_chunk_ = 0;   // packed: tokens per tile
  int64_t token_chunks_ = 1;  // packed: tiles per slab
  int64_t tiles_ = 0;
};

// x of operand b of `a` (block-quantized weights) quantized by `q`, in the context's dtype.
quant::QuantizedActs QuantizeActs(const CpuContext& ctx, const MatMulArgs& a, int64_t b,
                                  quant::ActQuantizer& q);

// The tiles of all `products` in one parallel region, `chunks_per_thread` contiguous runs of
// tiles per thread on average (more: better balance across uneven products).
void RunTiled(const CpuContext& ctx, const std::vector<TiledProduct>& products,
              int64_t chunks_per_thread);

// y = (add ? y : 0) + v, the epilogue every kernel ends with.
inline void StoreOut(float* y, float v, bool add) { *y = add ? *y + v : v; }

}  // namespace dsv2::matmul_internal
