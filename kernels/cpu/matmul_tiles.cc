// MatMul's split of work: each operand cut into tiles (TiledProduct), the tiles of one or many
// products run in one parallel region (RunTiled).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/matmul_internal.h"

namespace dsv2::matmul_internal {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Kernels {
  TileFn dot = DotScalar;
  TileFn packed = nullptr;  // nullptr: the dot kernel serves every n
  int64_t slab_rows = 1;    // rows of W per packed work item
  // The packed kernel takes over from this many tokens. Measured on Zen 5 with weights streaming
  // from DRAM: below it the dot kernel keeps memory busier than pack-then-compute does.
  int64_t packed_min_n = 0;
};

Kernels F32KernelsFor(CpuIsa isa) {
  Kernels k;
  if (isa >= CpuIsa::kAvx512) {
    k.dot = DotAvx512;
    k.packed = PackedAvx512;
    k.slab_rows = kAvx512SlabRows;
    k.packed_min_n = 48;
  } else if (isa == CpuIsa::kAvx2) {
    k.dot = DotAvx2;
    k.packed = PackedAvx2;
    k.slab_rows = kAvx2SlabRows;
    k.packed_min_n = 32;
  }
  return k;
}

// The bf16 GEMM takes over from 24 tokens. Measured on Zen 4, 2 threads: an expert's
// [1408, 2048] and [2048, 1408] in cache, dot 550-590 GFLOP/s from 4 to 47 tokens, GEMM
// 480-540 at 16, 600-660 at 24, 730-780 at 48; from DRAM ([102400, 2048] and [10944, 2048]),
// dot 361/401 at 16, 428/456 at 24, 468/493 at 32, GEMM 335/490, 449/576, 514/610.
constexpr int64_t kBf16PackedMinN = 24;
constexpr int64_t kBf16SlabRows = 32;
constexpr int64_t kTokenTile = 12;  // every packed kernel's micro-tile divides this

// Operand b of a MatMulArgs with bfloat16 activations and weights.
Bf16MatMul Bf16Operand(const MatMulArgs& a, int64_t b) {
  Bf16MatMul o;
  o.x = static_cast<const uint16_t*>(a.x) + b * a.x_batch_stride;
  o.x_stride = a.x_stride;
  o.n = a.n;
  o.w = a.w;
  o.w.data = static_cast<const uint8_t*>(a.w.data) + b * a.w_batch_stride * 2;
  o.y = static_cast<uint8_t*>(a.y) + b * a.y_batch_stride * (a.y_float32 ? 4 : 2);
  o.y_stride = a.y_stride;
  o.y_float32 = a.y_float32;
  o.accumulate = a.accumulate;
  return o;
}

}  // namespace

namespace {

// Quantized weights take the GEMM from this many tokens (bf16: the bf16 GEMM's own crossover;
// float32: the packed float32 kernel's).
constexpr int64_t kQuantBf16PackedMinN = kBf16PackedMinN;

bool QuantPacked(const CpuContext& ctx, const MatMulArgs& a) {
  if (ctx.act_dtype() == DType::kBF16) {
    return ctx.isa() >= CpuIsa::kAvx512Bf16 && a.n >= kQuantBf16PackedMinN;
  }
  const Kernels k = F32KernelsFor(ctx.isa());
  return k.packed != nullptr && a.n >= k.packed_min_n;
}

}  // namespace

bool TiledProduct::NeedsQuantizedActs(const CpuContext& ctx, const MatMulArgs& a) {
  return a.w.quantized() && !QuantPacked(ctx, a);
}

bool TiledProduct::Direct(const CpuContext& ctx, const MatMulArgs& a) {
  if (ctx.act_dtype() == DType::kF32 || a.w.quantized()) return true;
  return ctx.act_dtype() == DType::kBF16 && ctx.isa() >= CpuIsa::kAvx512Bf16 &&
         a.w.dtype == DType::kBF16;
}

quant::QuantizedActs QuantizeActs(const CpuContext& ctx, const MatMulArgs& a, int64_t b,
                                  quant::ActQuantizer& q) {
  const int64_t elem = ctx.act_dtype() == DType::kBF16 ? 2 : 4;
  const void* x = static_cast<const uint8_t*>(a.x) + b * a.x_batch_stride * elem;
  return q.Quantize(x, ctx.act_dtype(), a.n, a.x_stride, a.w.cols);
}

TiledProduct::TiledProduct(const CpuContext& ctx, const MatMulArgs& a, int64_t b, DType act,
                           const quant::QuantizedActs* acts)
    : n_(a.n), rows_(a.w.rows) {
  const F32MatMul shape = Operand(a, b);  // the pointers are only typed for float32
  Validate(shape);
  const int64_t n = a.n, rows = a.w.rows, cols = a.w.cols;
  if (n == 0 || rows == 0) return;
  const bool bf16 = act == DType::kBF16;
  DSV2_CHECK_MSG(
      !bf16 || a.w.quantized() || (ctx.isa() >= CpuIsa::kAvx512Bf16 && a.w.dtype == DType::kBF16),
      "MatMul: no direct bf16 path here");
  if (cols == 0) {  // an empty sum: y = 0, or y unchanged
    for (int64_t t = 0; t < n && !a.accumulate; ++t) {
      if (bf16 && !a.y_float32) {
        std::fill_n(static_cast<uint16_t*>(a.y) + b * a.y_batch_stride + t * a.y_stride, rows, 0);
      } else {
        std::fill_n(static_cast<float*>(a.y) + b * a.y_batch_stride + t * a.y_stride, rows, 0.f);
      }
    }
    return;
  }
  bool packed;
  if (a.w.quantized() && QuantPacked(ctx, a)) {
    kind_ = Kind::kQuantPacked;
    quant_bf16_ = bf16;
    dequantize_ = ctx.isa() >= CpuIsa::kAvx512Vnni ? quant::DequantizeRowsAvx512Vnni
                  : ctx.isa() >= CpuIsa::kAvx2     ? quant::DequantizeRowsAvx2
                                                   : quant::DequantizeRowsScalar;
    quant_.w = shape.w;
    if (bf16) {
      bf16_ = Bf16Operand(a, b);
      bf16_.w.data = nullptr;  // the slab buffer, per tile
      tile_rows_ = kBf16SlabRows;
    } else {
      f32_ = shape;
      const Kernels k = F32KernelsFor(ctx.isa());
      f32_tile_ = k.packed;
      tile_rows_ = k.slab_rows;
    }
    packed = true;
  } else if (a.w.quantized()) {
    DSV2_CHECK_MSG(acts != nullptr && acts->cols == cols, "MatMul: quantized x missing");
    quant_ = {
        .x = *acts,
        .n = n,
        .w = shape.w,
        .y = static_cast<uint8_t*>(a.y) + b * a.y_batch_stride * (bf16 && !a.y_float32 ? 2 : 4),
        .y_stride = a.y_stride,
        .y_bf16 = bf16 && !a.y_float32,
        .accumulate = a.accumulate};
    quant_tile_ = ctx.isa() >= CpuIsa::kAvx512Vnni ? quant::QuantDotAvx512Vnni
                  : ctx.isa() >= CpuIsa::kAvx2     ? quant::QuantDotAvx2
                                                   : quant::QuantDotScalar;
    kind_ = Kind::kQuantDot;
    packed = false;
  } else if (bf16) {
    bf16_ = Bf16Operand(a, b);
    packed = n >= kBf16PackedMinN;
    kind_ = packed ? Kind::kBf16Packed : Kind::kBf16Dot;
    tile_rows_ = kBf16SlabRows;
  } else {
    f32_ = shape;
    const Kernels k = F32KernelsFor(ctx.isa());
    packed = k.packed != nullptr && n >= k.packed_min_n;
    kind_ = packed ? Kind::kF32Packed : Kind::kF32Dot;
    f32_tile_ = packed ? k.packed : k.dot;
    tile_rows_ = k.slab_rows;
  }
  if (!packed) {
    // Tiles of 4-row groups covering at least ~64K weight elements × tokens.
    tile_rows_ = 4 * std::max<int64_t>(4, (1 << 16) / (4 * cols * n));
    tiles_ = CeilDiv(rows, tile_rows_);
    return;
  }
  // Slab × token chunk. Tokens are split only when there are too few slabs to keep every
  // thread busy; each split re-reads (and re-packs) the slab.
  const int64_t slabs = CeilDiv(rows, tile_rows_);
  const int64_t want_items = 4 * ctx.num_threads();
  token_chunk_ = n;
  if (slabs < want_items) {
    const int64_t splits = std::min(CeilDiv(want_items, slabs), CeilDiv(n, kTokenTile));
    token_chunk_ = CeilDiv(CeilDiv(n, splits), kTokenTile) * kTokenTile;
  }
  token_chunks_ = CeilDiv(n, token_chunk_);
  tiles_ = slabs * token_chunks_;
}

void TiledProduct::Run(int64_t tile) const {
  if (kind_ == Kind::kF32Dot || kind_ == Kind::kBf16Dot || kind_ == Kind::kQuantDot) {
    const int64_t r0 = tile * tile_rows_, r1 = std::min(rows_, r0 + tile_rows_);
    if (kind_ == Kind::kF32Dot) return f32_tile_(f32_, 0, n_, r0, r1);
    if (kind_ == Kind::kQuantDot) return quant_tile_(quant_, 0, n_, r0, r1);
    return DotAvx512Bf16(bf16_, 0, n_, r0, r1);
  }
  const int64_t s = tile / token_chunks_, c = tile % token_chunks_;
  const int64_t t0 = c * token_chunk_, t1 = std::min(n_, t0 + token_chunk_);
  const int64_t r0 = s * tile_rows_, r1 = std::min(rows_, r0 + tile_rows_);
  if (kind_ == Kind::kF32Packed) return f32_tile_(f32_, t0, t1, r0, r1);
  if (kind_ == Kind::kQuantPacked) return RunQuantPacked(t0, t1, r0, r1);
  PackedAvx512Bf16(bf16_, t0, t1, r0, r1);
}

void TiledProduct::RunQuantPacked(int64_t t0, int64_t t1, int64_t r0, int64_t r1) const {
  // The slab's rows dequantized (this thread's buffers), then the GEMM on them as a weight of
  // r1 - r0 rows whose outputs are columns r0.. of y.
  thread_local std::vector<float> slab;
  thread_local std::vector<uint16_t> slab16;
  const WeightView& w = quant_.w;
  WeightView view{.rows = r1 - r0, .cols = w.cols, .row_stride = w.cols};
  if (quant_bf16_) {  // the bf16 GEMM runs only with AVX512_BF16, so AVX-512 is there
    slab16.resize((r1 - r0) * w.cols);
    quant::DequantizeRowsBf16Avx512(w, r0, r1, slab16.data());
    Bf16MatMul op = bf16_;
    view.data = slab16.data();
    view.dtype = DType::kBF16;
    op.w = view;
    op.y = static_cast<uint8_t*>(bf16_.y) + r0 * (bf16_.y_float32 ? 4 : 2);
    return PackedAvx512Bf16(op, t0, t1, 0, r1 - r0);
  }
  slab.resize((r1 - r0) * w.cols);
  dequantize_(w, r0, r1, slab.data());
  F32MatMul op = f32_;
  view.data = slab.data();
  view.dtype = DType::kF32;
  op.w = view;
  op.y = f32_.y + r0;
  f32_tile_(op, t0, t1, 0, r1 - r0);
}

void RunTiled(const CpuContext& ctx, const std::vector<TiledProduct>& products,
              int64_t chunks_per_thread) {
  std::vector<int64_t> first(products.size() + 1, 0);  // the first tile of each product
  for (size_t p = 0; p < products.size(); ++p) first[p + 1] = first[p] + products[p].tiles();
  const int64_t total = first.back();
  if (total == 0) return;
  const int64_t chunk = std::max<int64_t>(1, total / (chunks_per_thread * ctx.num_threads()));
  ctx.ParallelForChunks(total, chunk, [&](int64_t begin, int64_t end) {
    size_t p = std::upper_bound(first.begin(), first.end(), begin) - first.begin() - 1;
    for (int64_t i = begin; i < end; ++i) {
      while (i >= first[p + 1]) ++p;
      products[p].Run(i - first[p]);
    }
  });
}

}  // namespace dsv2::matmul_internal
