// MatMul on the CPU: argument checks, the split of work over threads, the scalar kernel and the
// double-precision reference. The SIMD tiles live in matmul_avx512.cc and matmul_avx2.cc.
#include "kernels/matmul.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/matmul_internal.h"

namespace dsv2 {
namespace {

using matmul_internal::F32MatMul;
using matmul_internal::StoreOut;
using matmul_internal::TileFn;

// ---- Scalar kernel ------------------------------------------------------------------------

template <DType D>
inline float WeightAt(const uint8_t* row, int64_t k) {
  if constexpr (D == DType::kF32) return reinterpret_cast<const float*>(row)[k];
  if constexpr (D == DType::kF16) return F16ToFloat(reinterpret_cast<const uint16_t*>(row)[k]);
  return Bf16ToFloat(reinterpret_cast<const uint16_t*>(row)[k]);
}

// Up to 4 rows at a time share each load of x.
template <DType D>
void ScalarRange(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  const int64_t cols = a.w.cols;
  for (int64_t r = r0; r < r1; r += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, r1 - r));
    const uint8_t* w[4];
    for (int j = 0; j < 4; ++j) w[j] = a.w.RowPtr(r + std::min(j, nr - 1));
    for (int64_t t = t0; t < t1; ++t) {
      const float* x = a.x + t * a.x_stride;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int64_t k = 0; k < cols; ++k) {
        const float xv = x[k];
        for (int j = 0; j < 4; ++j) acc[j] += xv * WeightAt<D>(w[j], k);
      }
      for (int j = 0; j < nr; ++j) StoreOut(a.y + t * a.y_stride + r + j, acc[j], a.accumulate);
    }
  }
}

void DotScalar(const F32MatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  switch (a.w.dtype) {
    case DType::kBF16:
      return ScalarRange<DType::kBF16>(a, t0, t1, r0, r1);
    case DType::kF16:
      return ScalarRange<DType::kF16>(a, t0, t1, r0, r1);
    default:
      return ScalarRange<DType::kF32>(a, t0, t1, r0, r1);
  }
}

// ---- Dispatch -----------------------------------------------------------------------------

struct Kernels {
  TileFn dot = DotScalar;
  TileFn packed = nullptr;  // nullptr: the dot kernel serves every n
  int64_t slab_rows = 1;    // rows of W per packed work item
  // The packed kernel takes over from this many tokens. Measured on Zen 5 with weights streaming
  // from DRAM: below it the dot kernel keeps memory busier than pack-then-compute does.
  int64_t packed_min_n = 0;
};

Kernels KernelsFor(CpuIsa isa) {
  Kernels k;
  if (isa >= CpuIsa::kAvx512) {
    k.dot = matmul_internal::DotAvx512;
    k.packed = matmul_internal::PackedAvx512;
    k.slab_rows = matmul_internal::kAvx512SlabRows;
    k.packed_min_n = 48;
  } else if (isa == CpuIsa::kAvx2) {
    k.dot = matmul_internal::DotAvx2;
    k.packed = matmul_internal::PackedAvx2;
    k.slab_rows = matmul_internal::kAvx2SlabRows;
    k.packed_min_n = 32;
  }
  return k;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void Validate(const F32MatMul& a) {
  DSV2_CHECK(a.n >= 0 && a.w.rows >= 0 && a.w.cols >= 0);
  DSV2_CHECK_MSG(a.w.dtype == DType::kF32 || a.w.dtype == DType::kF16 || a.w.dtype == DType::kBF16,
                 "MatMul: weight dtype must be F32, F16 or BF16");
  if (a.n == 0 || a.w.rows == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr);
  DSV2_CHECK(a.w.data != nullptr || a.w.cols == 0);
  DSV2_CHECK(a.w.row_stride >= a.w.cols || a.w.rows == 1);
  DSV2_CHECK(a.n == 1 || (a.x_stride >= a.w.cols && a.y_stride >= a.w.rows));
}

void MatMulOne(const CpuContext& ctx, const F32MatMul& a) {
  Validate(a);
  const int64_t n = a.n, rows = a.w.rows, cols = a.w.cols;
  if (n == 0 || rows == 0) return;
  if (cols == 0) {  // an empty sum
    for (int64_t t = 0; t < n && !a.accumulate; ++t) std::fill_n(a.y + t * a.y_stride, rows, 0.f);
    return;
  }
  const Kernels k = KernelsFor(ctx.isa());

  if (k.packed == nullptr || n < k.packed_min_n) {
    // Work items are groups of 4 rows; a chunk covers at least ~64K weight elements per token.
    const int64_t groups = CeilDiv(rows, 4);
    const int64_t grain = std::max<int64_t>(4, (1 << 16) / (4 * cols * n));
    ctx.ParallelFor(groups, grain, [&](int64_t begin, int64_t end) {
      k.dot(a, 0, n, begin * 4, std::min(rows, end * 4));
    });
    return;
  }

  // Work items are slab × token-chunk. Tokens are split only when there are too few slabs to
  // keep every thread busy; each split re-reads (and re-converts) the slab.
  const int64_t slabs = CeilDiv(rows, k.slab_rows);
  const int64_t want_items = 4 * ctx.num_threads();
  int64_t token_chunk = n;
  if (slabs < want_items) {
    const int64_t splits = std::min(CeilDiv(want_items, slabs), CeilDiv(n, 12));
    token_chunk = CeilDiv(CeilDiv(n, splits), 12) * 12;  // a multiple of every micro-tile
  }
  const int64_t token_chunks = CeilDiv(n, token_chunk);
  ctx.ParallelFor(slabs * token_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t s = i / token_chunks, c = i % token_chunks;
      k.packed(a, c * token_chunk, std::min(n, (c + 1) * token_chunk), s * k.slab_rows,
               std::min(rows, (s + 1) * k.slab_rows));
    }
  });
}

void ReferenceOne(const F32MatMul& a) {
  Validate(a);
  for (int64_t t = 0; t < a.n; ++t) {
    for (int64_t r = 0; r < a.w.rows; ++r) {
      const uint8_t* w = a.w.RowPtr(r);
      double sum = 0.0;
      for (int64_t k = 0; k < a.w.cols; ++k) {
        sum += static_cast<double>(a.x[t * a.x_stride + k]) *
               static_cast<double>(LoadAsFloat(w, a.w.dtype, k));
      }
      float* y = a.y + t * a.y_stride + r;
      *y = static_cast<float>(a.accumulate ? static_cast<double>(*y) + sum : sum);
    }
  }
}

// Operand b of a (possibly batched) MatMulArgs, float32 on the CPU.
F32MatMul Operand(const MatMulArgs& a, int64_t b) {
  F32MatMul o;
  o.x = static_cast<const float*>(a.x) + b * a.x_batch_stride;
  o.x_stride = a.x_stride;
  o.n = a.n;
  o.w = a.w;
  if (b > 0)
    o.w.data = static_cast<const uint8_t*>(a.w.data) + b * a.w_batch_stride * DTypeSize(a.w.dtype);
  o.y = static_cast<float*>(a.y) + b * a.y_batch_stride;
  o.y_stride = a.y_stride;
  o.accumulate = a.accumulate;
  return o;
}

// MatMul with float32 activations (x, and y unless the caller's y is float32 anyway).
void MatMulF32(const CpuContext& ctx, const MatMulArgs& a) {
  const Kernels k = KernelsFor(ctx.isa());
  const bool dot_path = k.packed == nullptr || a.n < k.packed_min_n;
  if (a.batch == 1 || !dot_path || a.n == 0 || a.w.rows == 0 || a.w.cols == 0) {
    for (int64_t b = 0; b < a.batch; ++b) MatMulOne(ctx, Operand(a, b));
    return;
  }
  // Small products of many operands (the absorbed attention's per-head W_UK and W_UV in decode:
  // each alone too small to split, so it ran on one thread): one parallel region over every
  // operand's groups of 4 rows. Each row is computed as MatMulOne computes it.
  for (int64_t b = 0; b < a.batch; ++b) Validate(Operand(a, b));
  const int64_t n = a.n, rows = a.w.rows;
  const int64_t groups = CeilDiv(rows, 4);
  const int64_t grain = std::max<int64_t>(4, (1 << 16) / (4 * a.w.cols * n));
  ctx.ParallelFor(a.batch * groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t b = i / groups, g0 = i % groups;
      const int64_t g1 = std::min(groups, g0 + (end - i));
      k.dot(Operand(a, b), 0, n, g0 * 4, std::min(rows, g1 * 4));
      i += g1 - g0;
    }
  });
}

// Elements from an operand's first to one past its last: n rows `stride` apart, `batch`
// operands `batch_stride` apart, `width` values each.
int64_t Span(int64_t n, int64_t stride, int64_t batch, int64_t batch_stride, int64_t width) {
  return (n - 1) * stride + (batch - 1) * batch_stride + width;
}

// bfloat16 activations on any ISA: x widened to float32 (exact) with its layout kept, the
// float32 product, y rounded once (y = act(x·Wᵀ), or act(y + x·Wᵀ) when accumulating: the
// CUDA twin's cuBLAS epilogue). The buffers are the calling thread's and kept for the next call.
void MatMulWidened(const CpuContext& ctx, const MatMulArgs& a) {
  thread_local std::vector<float> x32, y32;
  const int64_t x_span = Span(a.n, a.x_stride, a.batch, a.x_batch_stride, a.w.cols);
  const int64_t y_span = Span(a.n, a.y_stride, a.batch, a.y_batch_stride, a.w.rows);
  x32.resize(x_span);
  cpu::WidenBf16(static_cast<const cpu::Bf16*>(a.x), x32.data(), x_span);
  MatMulArgs f = a;
  f.x = x32.data();
  if (a.y_float32) return MatMulF32(ctx, f);
  auto* y = static_cast<cpu::Bf16*>(a.y);
  y32.resize(y_span);
  if (a.accumulate) cpu::WidenBf16(y, y32.data(), y_span);
  f.y = y32.data();
  MatMulF32(ctx, f);
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t t = 0; t < a.n; ++t) {
      const int64_t at = b * a.y_batch_stride + t * a.y_stride;
      cpu::RoundToBf16(y32.data() + at, y + at, a.w.rows);
    }
  }
}

// Operand b of a MatMulArgs with bfloat16 activations and weights.
matmul_internal::Bf16MatMul Bf16Operand(const MatMulArgs& a, int64_t b) {
  matmul_internal::Bf16MatMul o;
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

// The vdpbf16ps dot path: every operand's groups of 4 rows in one parallel region, each row a
// few tokens at a time (n below the packed kernel's threshold).
void MatMulBf16Dot(const CpuContext& ctx, const MatMulArgs& a) {
  for (int64_t b = 0; b < a.batch; ++b) Validate(Operand(a, b));
  const int64_t n = a.n, rows = a.w.rows;
  const int64_t groups = CeilDiv(rows, 4);
  const int64_t grain = std::max<int64_t>(4, (1 << 16) / (4 * a.w.cols * n));
  ctx.ParallelFor(a.batch * groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t b = i / groups, g0 = i % groups;
      const int64_t g1 = std::min(groups, g0 + (end - i));
      matmul_internal::DotAvx512Bf16(Bf16Operand(a, b), 0, n, g0 * 4, std::min(rows, g1 * 4));
      i += g1 - g0;
    }
  });
}

// The vdpbf16ps packed path for larger n, one operand at a time: work items are slabs of 32
// rows × token chunks, split as MatMulOne splits the float32 packed path.
void MatMulBf16Packed(const CpuContext& ctx, const MatMulArgs& a) {
  constexpr int64_t kSlab = 32, kTile = 12;
  const int64_t n = a.n, rows = a.w.rows;
  const int64_t slabs = CeilDiv(rows, kSlab);
  const int64_t want_items = 4 * ctx.num_threads();
  int64_t token_chunk = n;
  if (slabs < want_items) {
    const int64_t splits = std::min(CeilDiv(want_items, slabs), CeilDiv(n, kTile));
    token_chunk = CeilDiv(CeilDiv(n, splits), kTile) * kTile;
  }
  const int64_t token_chunks = CeilDiv(n, token_chunk);
  for (int64_t b = 0; b < a.batch; ++b) {
    Validate(Operand(a, b));
    const matmul_internal::Bf16MatMul op = Bf16Operand(a, b);
    ctx.ParallelFor(slabs * token_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t s = i / token_chunks, c = i % token_chunks;
        matmul_internal::PackedAvx512Bf16(op, c * token_chunk, std::min(n, (c + 1) * token_chunk),
                                          s * kSlab, std::min(rows, (s + 1) * kSlab));
      }
    });
  }
}

}  // namespace

namespace cpu {

void MatMul(const CpuContext& ctx, const MatMulArgs& a) {
  DSV2_CHECK(a.batch >= 1);
  if (ctx.act_dtype() == DType::kF32) return MatMulF32(ctx, a);
  DSV2_CHECK_MSG(ctx.act_dtype() == DType::kBF16, "MatMul: activations are float32 or bfloat16");
  if (a.n == 0 || a.w.rows == 0) return;
  if (ctx.isa() >= CpuIsa::kAvx512Bf16 && a.w.dtype == DType::kBF16 && a.w.cols > 0) {
    // The GEMM takes over from 24 tokens. Measured on Zen 4, 2 threads: an expert's [1408, 2048]
    // and [2048, 1408] in cache, dot 550-590 GFLOP/s from 4 to 47 tokens, GEMM 480-540 at 16,
    // 600-660 at 24, 730-780 at 48; from DRAM ([102400, 2048] and [10944, 2048]), dot 361/401
    // at 16, 428/456 at 24, 468/493 at 32, GEMM 335/490, 449/576, 514/610.
    constexpr int64_t kBf16PackedMinN = 24;
    if (a.n < kBf16PackedMinN) return MatMulBf16Dot(ctx, a);
    return MatMulBf16Packed(ctx, a);
  }
  MatMulWidened(ctx, a);
}

}  // namespace cpu

void MatMulReference(const MatMulArgs& a) {
  DSV2_CHECK(a.batch >= 1);
  for (int64_t b = 0; b < a.batch; ++b) ReferenceOne(Operand(a, b));
}

}  // namespace dsv2
