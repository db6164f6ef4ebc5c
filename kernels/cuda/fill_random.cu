// FillRandom on the GPU: a grid-stride loop, one element per thread per step, the shared
// RandomUniform hash (so the values equal the CPU twin's up to the float rounding of scale).
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/fill_random.h"

namespace dsv2::cuda {
namespace {

template <typename T>
__global__ void FillRandomKernel(T* out, int64_t n, float scale, float offset, uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = FromFloat<T>(offset + scale * RandomUniform(seed, static_cast<uint64_t>(i)));
  }
}

}  // namespace

void FillRandom(CudaContext& ctx, const FillRandomArgs& a) {
  DSV2_CHECK(a.n >= 0 && (a.n == 0 || a.out != nullptr));
  if (a.n == 0) return;
  cudaStream_t stream = ctx.stream();
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>(CeilDiv(a.n, threads), 4096));
  DispatchAct(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    DSV2_LAUNCH(blocks, threads, 0, stream, FillRandomKernel<T>)
    (static_cast<T*>(a.out), a.n, a.scale, a.offset, a.seed);
    DSV2_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace dsv2::cuda
