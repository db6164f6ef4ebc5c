#include "kernels/embedding.h"

#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/quant_blocks.h"

namespace dsv2::cpu {
namespace {

// One row of the table (F32, F16, BF16 or block-quantized: dequantized) as TOut.
template <typename TOut>
void CopyRow(const uint8_t* row, DType dtype, int64_t dim, TOut* dst) {
  if (IsBlockQuantized(dtype)) {
    thread_local std::vector<float> values;
    values.resize(dim);
    DequantizeRow(dtype, row, values.data(), dim);
    for (int64_t i = 0; i < dim; ++i) dst[i] = FromFloat<TOut>(values[i]);
    return;
  }
  if constexpr (std::is_same_v<TOut, Bf16>) {
    if (dtype == DType::kBF16) {  // bf16 to bf16: the bits as they are
      std::memcpy(dst, row, dim * sizeof(Bf16));
      return;
    }
  } else {
    if (dtype == DType::kF32) {
      std::memcpy(dst, row, dim * sizeof(float));
      return;
    }
  }
  DSV2_CHECK_MSG(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16,
                 "EmbeddingLookup: table dtype must be F32, F16 or BF16");
  for (int64_t i = 0; i < dim; ++i) dst[i] = FromFloat<TOut>(LoadAsFloat(row, dtype, i));
}

}  // namespace

void EmbeddingLookup(const CpuContext& ctx, const EmbeddingArgs& a) {
  DSV2_CHECK(a.n >= 0);
  if (a.n == 0) return;
  DSV2_CHECK(a.ids != nullptr && a.out != nullptr && a.table.data != nullptr);
  const int64_t dim = a.table.cols;
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t t = 0; t < a.n; ++t) {
      DSV2_CHECK_MSG(a.ids[t] >= 0 && a.ids[t] < a.table.rows, "EmbeddingLookup: id out of range");
      CopyRow(a.table.RowPtr(a.ids[t]), a.table.dtype, dim, static_cast<T*>(a.out) + t * dim);
    }
  });
}

}  // namespace dsv2::cpu
