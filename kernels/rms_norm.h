// RMSNorm over the last dimension: y[i] = x[i] · rsqrt(mean(x²) + eps) · weight[i].
// x, y: [n, dim] float32 (rows `stride` apart, may alias); weight: [dim] float32.
#pragma once

#include <cstdint>

#include "kernels/cpu_context.h"

namespace dsv2 {

struct RmsNormArgs {
  const float* x = nullptr;
  float* y = nullptr;
  const float* weight = nullptr;
  int64_t n = 0;
  int64_t dim = 0;
  int64_t x_stride = 0;  // elements between rows of x
  int64_t y_stride = 0;  // elements between rows of y
  float eps = 1e-6f;
};

void RmsNorm(const CpuContext& ctx, const RmsNormArgs& args);

}  // namespace dsv2
