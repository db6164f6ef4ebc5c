#include "kernels/silu_mul.h"

#include <cmath>

#include "kernels/check.h"

namespace dsv2 {

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  DSV2_CHECK(n >= 0);
  if (n == 0) return;
  DSV2_CHECK(gate != nullptr && up != nullptr && out != nullptr);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace dsv2
