// CUDA twin of kernels/cast_rows.h: one thread per element (grid-stride); the dtypes are
// uniform across the launch, so the per-element switch never diverges. Rounding as the CPU
// twin: __float2bfloat16_rn is round-to-nearest-even, like FloatToBf16.
#include <algorithm>

#include "kernels/cast_rows.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"

namespace dsv2::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

__device__ __forceinline__ float Load(const void* p, bool is_bf16, int64_t i) {
  return is_bf16 ? ToFloat(static_cast<const bf16*>(p)[i]) : static_cast<const float*>(p)[i];
}

__global__ void CastRowsKernel(const void* x, bool x_bf16, const void* add, bool add_bf16, void* y,
                               bool y_bf16, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    float v = Load(x, x_bf16, i);
    if (add != nullptr) v += Load(add, add_bf16, i);
    if (y_bf16) {
      static_cast<bf16*>(y)[i] = FromFloat<bf16>(v);
    } else {
      static_cast<float*>(y)[i] = v;
    }
  }
}

}  // namespace

void CastRows(CudaContext& ctx, const CastRowsArgs& a) {
  DSV2_CHECK(a.n >= 0);
  if (a.n == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr);
  for (DType t : {a.x_dtype, a.add_dtype, a.y_dtype}) {
    DSV2_CHECK_MSG(t == DType::kF32 || t == DType::kBF16, "CastRows: float32 or bfloat16 only");
  }
  const int64_t blocks = std::min(CeilDiv(a.n, kThreads), kMaxBlocks);
  DSV2_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, ctx.stream(), CastRowsKernel)
  (a.x, a.x_dtype == DType::kBF16, a.add, a.add_dtype == DType::kBF16, a.y,
   a.y_dtype == DType::kBF16, a.n);
  DSV2_CUDA_LAUNCH_CHECK();
}

}  // namespace dsv2::cuda
