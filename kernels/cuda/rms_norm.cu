// CUDA twin of kernels/rms_norm.h: one thread block per row. Pass 1 forms the (optionally
// residual-added, rounded) row and its float32 sum of squares, reduced with warp shuffles and
// shared memory; pass 2 re-reads the row and writes act(act(x · inv_rms) · weight).
#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/rms_norm.h"

namespace dsv2::cuda {
namespace {

// Row r = blockIdx.x. x, add: rows x_stride apart; y: rows y_stride apart; weight: [dim].
// With add, x[r] is overwritten by act(x[r] + add[r]) in pass 1; each element is read and
// written by one thread, and every read of pass 1 precedes every write of pass 2 (the barrier
// in BlockSum), so y may share a row with x or add.
template <typename T>
__global__ void RmsNormKernel(T* x, const T* add, T* y, const float* weight, int dim,
                              int64_t x_stride, int64_t y_stride, float eps) {
  __shared__ float warp_sums[kWarp];
  const int64_t r = blockIdx.x;
  T* xr = x + r * x_stride;  // [dim]
  T* yr = y + r * y_stride;  // [dim]
  const int tid = static_cast<int>(threadIdx.x);
  const int step = static_cast<int>(blockDim.x);

  float sum_sq = 0.0f;
  if (add != nullptr) {
    const T* ar = add + r * x_stride;  // [dim]
    for (int i = tid; i < dim; i += step) {
      const T v = FromFloat<T>(ToFloat(xr[i]) + ToFloat(ar[i]));  // the residual stream, in T
      xr[i] = v;
      const float f = ToFloat(v);
      sum_sq += f * f;
    }
  } else {
    for (int i = tid; i < dim; i += step) {
      const float f = ToFloat(xr[i]);
      sum_sq += f * f;
    }
  }
  sum_sq = BlockSum(sum_sq, warp_sums);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);

  // This thread reads back only the elements it wrote in pass 1.
  for (int i = tid; i < dim; i += step) {
    yr[i] = FromFloat<T>(RoundTo<T>(ToFloat(xr[i]) * inv_rms) * weight[i]);
  }
}

// Threads per row: a few elements per thread, a multiple of 32, at most 512.
int RowThreads(int64_t dim) {
  if (dim <= 1024) return 128;
  if (dim <= 4096) return 256;
  return 512;
}

}  // namespace

void RmsNorm(CudaContext& ctx, const RmsNormArgs& a) {
  DSV2_CHECK(a.n >= 0 && a.dim >= 0);
  if (a.n == 0 || a.dim == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr && a.weight != nullptr);
  DSV2_CHECK(a.n == 1 || (a.x_stride >= a.dim && a.y_stride >= a.dim));
  DSV2_CHECK_MSG(a.add == nullptr || a.y != a.x, "RmsNorm: y may alias x only without add");
  DSV2_CHECK_MSG(a.n <= INT_MAX && a.dim <= INT_MAX, "RmsNorm: n and dim must fit a grid");
  cudaStream_t stream = ctx.stream();
  const int threads = RowThreads(a.dim);
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* x = const_cast<T*>(static_cast<const T*>(a.x));  // written only when add is set
    DSV2_LAUNCH(static_cast<unsigned>(a.n), threads, 0, stream, RmsNormKernel<T>)
    (x, static_cast<const T*>(a.add), static_cast<T*>(a.y), a.weight, static_cast<int>(a.dim),
     a.x_stride, a.y_stride, a.eps);
    DSV2_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace dsv2::cuda
