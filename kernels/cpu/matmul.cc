// MatMul on the CPU: argument checks, the scalar kernel, bfloat16 activations widened where no
// bf16 kernel applies, and the double-precision reference. The split into tiles is
// matmul_tiles.cc; the SIMD tiles live in matmul_avx512.cc, matmul_avx2.cc and
// matmul_avx512bf16.cc.
#include "kernels/matmul.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/quant_blocks.h"

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

}  // namespace

namespace matmul_internal {

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

void Validate(const F32MatMul& a) {
  DSV2_CHECK(a.n >= 0 && a.w.rows >= 0 && a.w.cols >= 0);
  DSV2_CHECK_MSG(a.w.dtype == DType::kF32 || a.w.dtype == DType::kF16 ||
                     a.w.dtype == DType::kBF16 || a.w.quantized(),
                 "MatMul: weight dtype must be F32, F16, BF16 or block-quantized");
  if (a.w.quantized()) {
    const int64_t block = BlockElements(a.w.dtype);
    DSV2_CHECK_MSG(a.w.cols % block == 0 && a.w.row_stride % block == 0,
                   "MatMul: a quantized weight's rows are whole blocks");
  }
  if (a.n == 0 || a.w.rows == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr);
  DSV2_CHECK(a.w.data != nullptr || a.w.cols == 0);
  DSV2_CHECK(a.w.row_stride >= a.w.cols || a.w.rows == 1);
  DSV2_CHECK(a.n == 1 || (a.x_stride >= a.w.cols && a.y_stride >= a.w.rows));
}

// Operand b of a (possibly batched) MatMulArgs, float32 on the CPU.
F32MatMul Operand(const MatMulArgs& a, int64_t b) {
  F32MatMul o;
  o.x = static_cast<const float*>(a.x) + b * a.x_batch_stride;
  o.x_stride = a.x_stride;
  o.n = a.n;
  o.w = a.w;
  if (b > 0)
    o.w.data = static_cast<const uint8_t*>(a.w.data) + RowBytes(a.w.dtype, b * a.w_batch_stride);
  o.y = static_cast<float*>(a.y) + b * a.y_batch_stride;
  o.y_stride = a.y_stride;
  o.accumulate = a.accumulate;
  return o;
}

}  // namespace matmul_internal

namespace {

using matmul_internal::Operand;
using matmul_internal::Validate;

void ReferenceOne(const F32MatMul& a) {
  Validate(a);
  std::vector<float> w(a.w.cols);
  for (int64_t t = 0; t < a.n; ++t) {
    for (int64_t r = 0; r < a.w.rows; ++r) {
      DequantizeRow(a.w.dtype, a.w.RowPtr(r), w.data(), a.w.cols);
      double sum = 0.0;
      for (int64_t k = 0; k < a.w.cols; ++k) {
        sum += static_cast<double>(a.x[t * a.x_stride + k]) * static_cast<double>(w[k]);
      }
      float* y = a.y + t * a.y_stride + r;
      *y = static_cast<float>(a.accumulate ? static_cast<double>(*y) + sum : sum);
    }
  }
}

// A product on a direct path (TiledProduct): every operand's tiles in one parallel region.
// `act`: the dtype of x and y (the context's, or float32 for the widened copies).
void Direct(const CpuContext& ctx, const MatMulArgs& a, DType act) {
  std::vector<matmul_internal::TiledProduct> operands;
  operands.reserve(a.batch);
  thread_local std::vector<quant::ActQuantizer> quantizers;
  if (a.w.quantized() && static_cast<int64_t>(quantizers.size()) < a.batch) {
    quantizers = std::vector<quant::ActQuantizer>(a.batch);
  }
  const bool quantize_x = matmul_internal::TiledProduct::NeedsQuantizedActs(ctx, a);
  std::vector<quant::QuantizedActs> acts(quantize_x ? a.batch : 0);
  for (int64_t b = 0; b < a.batch; ++b) {
    if (quantize_x) acts[b] = matmul_internal::QuantizeActs(ctx, a, b, quantizers[b]);
    operands.emplace_back(ctx, a, b, act, quantize_x ? &acts[b] : nullptr);
  }
  matmul_internal::RunTiled(ctx, operands, 4);
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
  if (a.y_float32) return Direct(ctx, f, DType::kF32);
  auto* y = static_cast<cpu::Bf16*>(a.y);
  y32.resize(y_span);
  if (a.accumulate) cpu::WidenBf16(y, y32.data(), y_span);
  f.y = y32.data();
  Direct(ctx, f, DType::kF32);
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t t = 0; t < a.n; ++t) {
      const int64_t at = b * a.y_batch_stride + t * a.y_stride;
      cpu::RoundToBf16(y32.data() + at, y + at, a.w.rows);
    }
  }
}

}  // namespace

namespace cpu {

void MatMul(const CpuContext& ctx, const MatMulArgs& a) {
  DSV2_CHECK(a.batch >= 1);
  DSV2_CHECK_MSG(ctx.act_dtype() == DType::kF32 || ctx.act_dtype() == DType::kBF16,
                 "MatMul: activations are float32 or bfloat16");
  if (a.n == 0 || a.w.rows == 0) {
    for (int64_t b = 0; b < a.batch; ++b) Validate(Operand(a, b));
    return;
  }
  if (matmul_internal::TiledProduct::Direct(ctx, a)) return Direct(ctx, a, ctx.act_dtype());
  MatMulWidened(ctx, a);
}

void MatMulGroup(const CpuContext& ctx, const std::vector<MatMulArgs>& products) {
  std::vector<matmul_internal::TiledProduct> direct;
  // Quantized x, one per distinct activation operand (an expert's gate and up share theirs).
  thread_local std::vector<quant::ActQuantizer> quantizers;
  struct Quantized {
    const void* x;
    int64_t n, stride, cols;
    quant::QuantizedActs acts;
  };
  std::vector<Quantized> quantized;
  for (const MatMulArgs& a : products) {
    DSV2_CHECK(a.batch >= 1);
    if (!matmul_internal::TiledProduct::Direct(ctx, a)) {
      MatMul(ctx, a);  // widened: a region of its own
      continue;
    }
    if (!matmul_internal::TiledProduct::NeedsQuantizedActs(ctx, a)) {
      for (int64_t b = 0; b < a.batch; ++b) direct.emplace_back(ctx, a, b, ctx.act_dtype());
      continue;
    }
    if (a.batch > 1) {
      MatMul(ctx, a);  // int8 x per operand of a batch: a region of its own
      continue;
    }
    auto same = std::find_if(quantized.begin(), quantized.end(), [&](const Quantized& q) {
      return q.x == a.x && q.n == a.n && q.stride == a.x_stride && q.cols == a.w.cols;
    });
    if (same == quantized.end()) {
      if (quantizers.size() <= quantized.size()) quantizers.resize(quantized.size() + 1);
      quant::ActQuantizer& q = quantizers[quantized.size()];
      quantized.push_back(
          {a.x, a.n, a.x_stride, a.w.cols, matmul_internal::QuantizeActs(ctx, a, 0, q)});
      same = quantized.end() - 1;
    }
    direct.emplace_back(ctx, a, 0, ctx.act_dtype(), &same->acts);
  }
  matmul_internal::RunTiled(ctx, direct, 16);
}

}  // namespace cpu

void MatMulReference(const MatMulArgs& a) {
  DSV2_CHECK(a.batch >= 1);
  for (int64_t b = 0; b < a.batch; ++b) ReferenceOne(Operand(a, b));
}

}  // namespace dsv2
