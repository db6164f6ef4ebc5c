#include "kernels/cast_rows.h"

#include <cstring>

#include "kernels/check.h"

namespace dsv2::cpu {

void CastRows(const CpuContext& /*ctx*/, const CastRowsArgs& a) {
  DSV2_CHECK(a.n >= 0);
  if (a.n == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr);
  for (DType t : {a.x_dtype, a.add_dtype, a.y_dtype}) {
    DSV2_CHECK_MSG(t == DType::kF32 || t == DType::kBF16, "CastRows: float32 or bfloat16 only");
  }
  for (int64_t i = 0; i < a.n; ++i) {
    float v = LoadAsFloat(a.x, a.x_dtype, i);
    if (a.add != nullptr) v += LoadAsFloat(a.add, a.add_dtype, i);
    if (a.y_dtype == DType::kF32) {
      std::memcpy(static_cast<float*>(a.y) + i, &v, sizeof(float));
    } else {
      const uint16_t b = FloatToBf16(v);
      std::memcpy(static_cast<uint16_t*>(a.y) + i, &b, sizeof(b));
    }
  }
}

}  // namespace dsv2::cpu
