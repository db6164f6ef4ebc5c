#include "kernels/embedding.h"

#include <cstring>

#include "kernels/check.h"

namespace dsv2::cpu {

void EmbeddingLookup(const CpuContext& /*ctx*/, const EmbeddingArgs& a) {
  DSV2_CHECK(a.n >= 0);
  if (a.n == 0) return;
  DSV2_CHECK(a.ids != nullptr && a.out != nullptr && a.table.data != nullptr);
  const int64_t dim = a.table.cols;
  for (int64_t t = 0; t < a.n; ++t) {
    DSV2_CHECK_MSG(a.ids[t] >= 0 && a.ids[t] < a.table.rows, "EmbeddingLookup: id out of range");
    const uint8_t* row = a.table.RowPtr(a.ids[t]);
    float* dst = static_cast<float*>(a.out) + t * dim;  // [dim]
    switch (a.table.dtype) {
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

}  // namespace dsv2::cpu
