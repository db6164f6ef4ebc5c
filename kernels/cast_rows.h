// CastRows: y[i] = round_to(y_dtype, float(x[i]) + float(add[i])) for i < n (add optional).
// The crossings between the activation dtype and the float32 rows of the expert-parallel data
// plane: widen bf16 rows to float32 for NCCL, and round the float32 partial sums plus the
// coordinator's own terms back once. x, add, y are float32 or bfloat16 (rounded to nearest
// even); y may alias x or add of the same dtype (each element is read, then written, by one
// thread).
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"

namespace dsv2 {

struct CastRowsArgs {
  const void* x = nullptr;
  DType x_dtype = DType::kF32;
  const void* add = nullptr;  // optional
  DType add_dtype = DType::kF32;
  void* y = nullptr;
  DType y_dtype = DType::kF32;
  int64_t n = 0;  // elements
};

namespace cpu {
void CastRows(const CpuContext& ctx, const CastRowsArgs& args);
}
namespace cuda {
void CastRows(CudaContext& ctx, const CastRowsArgs& args);
}

inline void CastRows(const ExecContext& ctx, const CastRowsArgs& args) {
  if (ctx.on_cuda()) return cuda::CastRows(ctx.cuda(), args);
  cpu::CastRows(ctx.cpu(), args);
}

}  // namespace dsv2
