// CUDA twin of kernels/latent_cache_write.h: one thread block per token. The block ropes the
// k_pe tail with the shared RotatePair, sums the squares of the latent c (warp shuffles + shared
// memory), then writes act(act(c · inv_rms) · weight) into the token's paged cache row.
#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/latent_cache_write.h"
#include "kernels/rope.h"

namespace dsv2::cuda {
namespace {

constexpr int kThreads = 256;  // a multiple of 32: BlockSum needs whole warps

// Token t = blockIdx.x. ckv: rows ckv_stride apart, [rank + 2·pairs] each. The cache row of
// slot s is at cache + (s / page_size)·page_stride + (s % page_size)·row_dim: [rank | 2·pairs].
template <typename T>
__global__ void LatentCacheWriteKernel(const T* ckv, int64_t ckv_stride, int rank, int pairs,
                                       const float* norm_weight, float eps,
                                       const int32_t* positions, const int64_t* slots,
                                       const float* inv_freq, float attn_factor, T* cache,
                                       int64_t page_stride, int64_t page_size, int64_t row_dim) {
  __shared__ float warp_sums[kWarp];
  const int64_t t = blockIdx.x;
  const T* in = ckv + t * ckv_stride;  // [rank + 2·pairs]
  const int64_t slot = slots[t];
  T* row = cache + (slot / page_size) * page_stride + (slot % page_size) * row_dim;  // [row_dim]
  const int tid = static_cast<int>(threadIdx.x);

  // k_pe: interleaved pairs roped at the token's position (kernels/rope.h).
  const float pos = static_cast<float>(positions[t]);
  for (int i = tid; i < pairs; i += kThreads) {
    const float angle = pos * inv_freq[i];
    const int64_t e = rank + 2 * static_cast<int64_t>(i);
    const RotatedPair p =
        RotatePair(ToFloat(in[e]), ToFloat(in[e + 1]), cosf(angle), sinf(angle), attn_factor);
    row[e] = FromFloat<T>(p.first);
    row[e + 1] = FromFloat<T>(p.second);
  }

  // c_norm: RMSNorm of the first `rank` values (kernels/rms_norm.h).
  float sum_sq = 0.0f;
  for (int i = tid; i < rank; i += kThreads) {
    const float f = ToFloat(in[i]);
    sum_sq += f * f;
  }
  sum_sq = BlockSum(sum_sq, warp_sums);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(rank) + eps);
  for (int i = tid; i < rank; i += kThreads) {
    row[i] = FromFloat<T>(RoundTo<T>(ToFloat(in[i]) * inv_rms) * norm_weight[i]);
  }
}

}  // namespace

void LatentCacheWrite(CudaContext& ctx, const LatentCacheWriteArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0);
  if (a.n_tokens == 0) return;
  const LatentCacheLayerView& c = a.cache;
  DSV2_CHECK_MSG(c.dtype == ctx.act_dtype(),
                 "LatentCacheWrite (CUDA): the cache dtype is the activation dtype");
  DSV2_CHECK(a.kv_lora_rank >= 0 && a.rope_dim >= 0);
  DSV2_CHECK(c.row_dim == a.kv_lora_rank + a.rope_dim && a.rope_dim % 2 == 0);
  DSV2_CHECK(c.page_size >= 1);
  DSV2_CHECK(a.ckv != nullptr && a.norm_weight != nullptr && a.positions != nullptr &&
             a.slots != nullptr && a.inv_freq != nullptr && c.base != nullptr);
  DSV2_CHECK_MSG(a.n_tokens <= INT_MAX && c.row_dim <= INT_MAX,
                 "LatentCacheWrite: sizes must fit a grid");
  cudaStream_t stream = ctx.stream();
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    DSV2_LAUNCH(static_cast<unsigned>(a.n_tokens), kThreads, 0, stream, LatentCacheWriteKernel<T>)
    (static_cast<const T*>(a.ckv), a.ckv_stride, static_cast<int>(a.kv_lora_rank),
     static_cast<int>(a.rope_dim / 2), a.norm_weight, a.eps, a.positions, a.slots, a.inv_freq,
     a.attn_factor, static_cast<T*>(c.base), c.page_stride, c.page_size, c.row_dim);
    DSV2_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace dsv2::cuda
