// CUDA twin of kernels/router_topk.h: one thread per token running the shared RouteOneToken
// (softmax, group limit, top-k, weights) on local scratch, then copying its top_k results out.
#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/router_topk.h"

namespace dsv2::cuda {
namespace {

constexpr int kThreads = 128;

// logits: [n_tokens, n_experts]; expert, weight: [n_tokens, top_k]. The insertion sort runs on
// local arrays so that only the final top_k values reach global memory.
__global__ void RouterTopKKernel(RouterRule rule, const float* logits, int64_t n_tokens,
                                 int32_t* expert, float* weight) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_tokens) return;
  float scores[kMaxRoutedExperts];  // [n_experts] scratch
  int32_t ids[kMaxRouterTopK];      // [top_k]
  float w[kMaxRouterTopK];          // [top_k]
  RouteOneToken(rule, logits + t * rule.n_experts, scores, ids, w);
  for (int32_t k = 0; k < rule.top_k; ++k) {
    expert[t * rule.top_k + k] = ids[k];
    weight[t * rule.top_k + k] = w[k];
  }
}

}  // namespace

void RouterTopK(CudaContext& ctx, const RouterTopKArgs& a) {
  CheckRouterTopKArgs(a);
  const RouterRule& r = a.rule;
  if (a.n_tokens == 0) return;
  const int64_t blocks = CeilDiv(a.n_tokens, kThreads);
  DSV2_CHECK_MSG(blocks <= INT_MAX, "RouterTopK: n_tokens must fit a grid");
  cudaStream_t stream = ctx.stream();
  DSV2_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, RouterTopKKernel)
  (r, a.logits, a.n_tokens, a.expert, a.weight);
  DSV2_CUDA_LAUNCH_CHECK();
}

}  // namespace dsv2::cuda
