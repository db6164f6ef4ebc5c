// MatMul: y[n, rows] (+)= x[n, cols] · Wᵀ  with W a checkpoint weight [rows, cols].
//
// x and y are float32; W is F32, F16 or BF16 and is widened to float32 as it is used: in
// registers for small n, or one 32-row × 1024-column panel at a time (a thread-local stack
// buffer) for large n — never a full-size float32 copy. Accumulation is float32 (fp32 FMA; the
// bf16 dot-product instructions would round x to bf16 and break parity with the reference).
// n == 1 is the decode matvec and is bandwidth-bound: the work is split across threads by rows
// of W. For larger n a panel of W is reused across all tokens, so each weight byte is read
// from memory once per call.
#pragma once

#include <cstdint>

#include "kernels/cpu_context.h"
#include "kernels/weight_view.h"

namespace dsv2 {

struct MatMulArgs {
  const float* x = nullptr;  // [n, w.cols], rows x_stride apart
  int64_t x_stride = 0;
  int64_t n = 0;
  WeightView w;        // [rows, cols]
  float* y = nullptr;  // [n, w.rows], rows y_stride apart
  int64_t y_stride = 0;
  bool accumulate = false;  // y += x·Wᵀ instead of y = x·Wᵀ
};

void MatMul(const CpuContext& ctx, const MatMulArgs& args);

// Same contract computed with plain scalar loops in double precision: the test oracle.
void MatMulReference(const MatMulArgs& args);

}  // namespace dsv2
