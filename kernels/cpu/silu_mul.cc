#include "kernels/silu_mul.h"

#include "kernels/check.h"

namespace dsv2::cpu {

void SiluMul(const CpuContext& /*ctx*/, const SiluMulArgs& a) {
  DSV2_CHECK(a.rows >= 0 && a.width >= 0);
  if (a.rows == 0 || a.width == 0) return;
  DSV2_CHECK(a.gate != nullptr && a.up != nullptr && a.out != nullptr);
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* g = static_cast<const float*>(a.gate) + r * a.gate_stride;  // [width]
    const float* u = static_cast<const float*>(a.up) + r * a.up_stride;      // [width]
    float* o = static_cast<float*>(a.out) + r * a.out_stride;                // [width]
    for (int64_t i = 0; i < a.width; ++i) o[i] = SiluTimes(g[i], u[i]);
  }
}

}  // namespace dsv2::cpu
