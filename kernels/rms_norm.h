// RMSNorm over the last dimension, optionally after a residual add (REFERENCE.md §5):
//   if add:  x[r] ← x[r] + add[r]            (the residual stream, rounded to the act dtype)
//   y[r, i] = act(act(x[r, i] · rsqrt(mean(x[r]²) + eps)) · weight[i])
// x, add, y: [n, dim] in the context's activation dtype, rows `*_stride` elements apart; y may
// alias x only when add is null. weight: [dim] float32 on the context's device. Statistics are
// float32 (the CPU twin sums squares in double, which only brings it closer to torch).
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"

namespace dsv2 {

struct RmsNormArgs {
  const void* x = nullptr;  // in/out when `add` is set
  void* y = nullptr;
  const float* weight = nullptr;
  int64_t n = 0;
  int64_t dim = 0;
  int64_t x_stride = 0;  // elements between rows of x (and of add)
  int64_t y_stride = 0;  // elements between rows of y
  float eps = 1e-6f;
  const void* add = nullptr;  // optional [n, dim]: x += add first
};

namespace cpu {
void RmsNorm(const CpuContext& ctx, const RmsNormArgs& args);
}
namespace cuda {
void RmsNorm(CudaContext& ctx, const RmsNormArgs& args);
}

inline void RmsNorm(const ExecContext& ctx, const RmsNormArgs& args) {
  if (ctx.on_cuda()) return cuda::RmsNorm(ctx.cuda(), args);
  cpu::RmsNorm(ctx.cpu(), args);
}

}  // namespace dsv2
