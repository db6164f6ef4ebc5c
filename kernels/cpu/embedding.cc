#include "kernels/embedding.h"

#include <algorithm>
#include <cstring>

#include "kernels/check.h"

namespace dsv2 {

void EmbeddingLookup(const WeightView& table, const int32_t* ids, int64_t n, float* out) {
  DSV2_CHECK(n >= 0);
  if (n == 0) return;
  DSV2_CHECK(ids != nullptr && out != nullptr && table.data != nullptr);
  const int64_t dim = table.cols;
  for (int64_t t = 0; t < n; ++t) {
    DSV2_CHECK_MSG(ids[t] >= 0 && ids[t] < table.rows, "EmbeddingLookup: id out of range");
    const uint8_t* row = table.RowPtr(ids[t]);
    float* dst = out + t * dim;  // [dim]
    switch (table.dtype) {
      case DType::kF32:
        std::memcpy(dst, row, dim * sizeof(float));
        break;
      case DType::kBF16:
        for (int64_t i = 0; i < dim; ++i)
          dst[i] = Bf16ToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
        break;
      case DType::kF16:
        for (int64_t i = 0; i < dim; ++i)
          dst[i] = F16ToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
        break;
      default:
        DSV2_CHECK_MSG(false, "EmbeddingLookup: table dtype must be F32, F16 or BF16");
    }
  }
}

}  // namespace dsv2
