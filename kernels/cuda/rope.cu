// CUDA twin of kernels/rope.h: one thread block per token. The block computes cos/sin of up to
// kRopeThreads pairs once into shared memory, then its threads rotate (vector, pair) items of
// that chunk with the shared RotatePair, in place or into `out`.
#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/rope.h"

namespace dsv2::cuda {
namespace {

constexpr int kRopeThreads = 256;  // also the pairs per cos/sin chunk

// Token t = blockIdx.x. x: vectors at t·token_stride + v·vec_stride, [2·pairs] each; out
// likewise with its own strides (out == x with x's strides when in place). Each pair is read
// and written by one thread, so in-place rotation is safe.
template <typename T>
__global__ void RopeKernel(const T* x, T* out, const int32_t* positions, const float* inv_freq,
                           int n_vecs, int pairs, int64_t token_stride, int64_t vec_stride,
                           int64_t out_token_stride, int64_t out_vec_stride, float attn_factor) {
  __shared__ float cos_s[kRopeThreads];  // [np]
  __shared__ float sin_s[kRopeThreads];  // [np]
  const int64_t t = blockIdx.x;
  const T* in_t = x + t * token_stride;
  T* out_t = out + t * out_token_stride;
  const float pos = static_cast<float>(positions[t]);
  const int tid = static_cast<int>(threadIdx.x);
  for (int p0 = 0; p0 < pairs; p0 += kRopeThreads) {
    const int np = min(kRopeThreads, pairs - p0);
    if (tid < np) {
      const float angle = pos * inv_freq[p0 + tid];  // torch float32: float(pos) · inv_freq
      cos_s[tid] = cosf(angle);
      sin_s[tid] = sinf(angle);
    }
    __syncthreads();
    const int items = n_vecs * np;  // fits an int: checked on the host
    for (int j = tid; j < items; j += kRopeThreads) {
      const int v = j / np;
      const int i = j - v * np;
      const int64_t e = 2 * static_cast<int64_t>(p0 + i);  // element of the pair's first value
      const T* src = in_t + v * vec_stride + e;
      T* dst = out_t + v * out_vec_stride + e;
      const RotatedPair r =
          RotatePair(ToFloat(src[0]), ToFloat(src[1]), cos_s[i], sin_s[i], attn_factor);
      dst[0] = FromFloat<T>(r.first);
      dst[1] = FromFloat<T>(r.second);
    }
    __syncthreads();  // cos_s/sin_s are rewritten by the next chunk
  }
}

}  // namespace

void ApplyRope(CudaContext& ctx, const RopeArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.n_vecs >= 0 && a.dim >= 0);
  DSV2_CHECK_MSG(a.dim % 2 == 0, "ApplyRope: dim must be even");
  if (a.n_tokens == 0 || a.n_vecs == 0 || a.dim == 0) return;
  DSV2_CHECK(a.x != nullptr && a.positions != nullptr && a.inv_freq != nullptr);
  DSV2_CHECK_MSG(a.n_tokens <= INT_MAX && a.n_vecs <= INT_MAX / kRopeThreads && a.dim <= INT_MAX,
                 "ApplyRope: sizes must fit a grid");
  const bool in_place = a.out == nullptr;
  const int64_t out_token_stride = in_place ? a.token_stride : a.out_token_stride;
  const int64_t out_vec_stride = in_place ? a.vec_stride : a.out_vec_stride;
  cudaStream_t stream = ctx.stream();
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a.x);
    T* out = in_place ? static_cast<T*>(a.x) : static_cast<T*>(a.out);
    DSV2_LAUNCH(static_cast<unsigned>(a.n_tokens), kRopeThreads, 0, stream, RopeKernel<T>)
    (x, out, a.positions, a.inv_freq, static_cast<int>(a.n_vecs), static_cast<int>(a.dim / 2),
     a.token_stride, a.vec_stride, out_token_stride, out_vec_stride, a.attn_factor);
    DSV2_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace dsv2::cuda
