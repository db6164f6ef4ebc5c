// CUDA twin of kernels/silu_mul.h: one thread per column of a row, gridDim.x blocks across the
// width and gridDim.y (at most 65535) striding over the rows; the math is the shared SiluTimes.
#include <algorithm>
#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/silu_mul.h"

namespace dsv2::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// gate, up, out: [rows, width], rows `*_stride` elements apart. Each element is read and written
// by one thread, so out may alias gate or up.
template <typename T>
__global__ void SiluMulKernel(const T* gate, const T* up, T* out, int64_t rows, int width,
                              int64_t gate_stride, int64_t up_stride, int64_t out_stride) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= width) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float g = ToFloat(gate[r * gate_stride + i]);
    const float u = ToFloat(up[r * up_stride + i]);
    out[r * out_stride + i] = FromFloat<T>(SiluTimes(g, u));
  }
}

}  // namespace

void SiluMul(CudaContext& ctx, const SiluMulArgs& a) {
  DSV2_CHECK(a.rows >= 0 && a.width >= 0);
  if (a.rows == 0 || a.width == 0) return;
  DSV2_CHECK(a.gate != nullptr && a.up != nullptr && a.out != nullptr);
  DSV2_CHECK_MSG(a.width <= INT_MAX, "SiluMul: width must fit an int");
  const dim3 grid(static_cast<unsigned>(CeilDiv(a.width, kThreads)),
                  static_cast<unsigned>(std::min(a.rows, kMaxGridY)));
  cudaStream_t stream = ctx.stream();
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    DSV2_LAUNCH(grid, kThreads, 0, stream, SiluMulKernel<T>)
    (static_cast<const T*>(a.gate), static_cast<const T*>(a.up), static_cast<T*>(a.out), a.rows,
     static_cast<int>(a.width), a.gate_stride, a.up_stride, a.out_stride);
    DSV2_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace dsv2::cuda
