// LogitsSummary on the GPU: one block of 1024 threads per row. Pass 1 finds the first maximal
// logit (a block reduction of (logit, id) pairs, NaN skipped), pass 2 sums exp(l − max) in
// double (or counts the maximal logits when the maximum is infinite), then top_n rounds each
// find the best (logit, id) ranked after the previous round's pick (logit descending, id
// ascending, NaN as −inf): no sort, no scratch beyond shared memory.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/logits_summary.h"

namespace dsv2::cuda {
namespace {

constexpr int kThreads = 1024;

struct Pick {
  float l;
  int32_t id;  // -1: nothing
};

// Whether a ranks before b: larger logit, then lower id; an empty pick ranks last.
__device__ __forceinline__ bool Before(const Pick& a, const Pick& b) {
  if (a.id < 0) return false;
  if (b.id < 0) return true;
  return a.l > b.l || (a.l == b.l && a.id < b.id);
}

// The best pick of the block (every thread gets it). smem: [kThreads / 32].
__device__ Pick BlockBest(Pick p, Pick* smem) {
  for (int off = kWarp / 2; off > 0; off /= 2) {
    Pick o{__shfl_xor_sync(0xffffffffu, p.l, off), __shfl_xor_sync(0xffffffffu, p.id, off)};
    if (Before(o, p)) p = o;
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = p;
  __syncthreads();
  p = lane < kThreads / kWarp ? smem[lane] : Pick{0.0f, -1};
  for (int off = kWarp / 2; off > 0; off /= 2) {
    Pick o{__shfl_xor_sync(0xffffffffu, p.l, off), __shfl_xor_sync(0xffffffffu, p.id, off)};
    if (Before(o, p)) p = o;
  }
  return p;
}

__device__ double BlockSumDouble(double v, double* smem) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < kThreads / kWarp ? smem[lane] : 0.0;
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__global__ void __launch_bounds__(kThreads)
    LogitsSummaryKernel(const float* logits, int64_t vocab, const int32_t* rows, int32_t top_n,
                        LogitsSummaryRow* out) {
  __shared__ Pick picks[kThreads / kWarp];
  __shared__ double sums[kThreads / kWarp];
  const float* l = logits + static_cast<int64_t>(rows[blockIdx.x]) * vocab;  // [vocab]
  // Pass 1: the first maximal logit, NaN never; a row of -inf keeps its first -inf.
  Pick best{-INFINITY, -1};
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = l[i];
    if (v > best.l || (best.id < 0 && v == best.l)) best = {v, static_cast<int32_t>(i)};
  }
  best = BlockBest(best, picks);
  const float max = best.id < 0 ? -INFINITY : best.l;
  // Pass 2: the normaliser.
  const bool finite = isfinite(max);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = l[i];
    if (finite) {
      // In double, as the CPU twin (see kernels/cpu/logits_summary.cc): expf is ex2.approx
      // (2 ulp of float), which would move log_sum by ~1e-8 from the CPU's.
      sum += isnan(v) ? 0.0 : exp(static_cast<double>(v - max));
    } else {
      sum += (isnan(v) ? -INFINITY : v) == max ? 1.0 : 0.0;
    }
  }
  sum = BlockSumDouble(sum, sums);
  LogitsSummaryRow* r = out + blockIdx.x;
  if (threadIdx.x == 0) {
    r->argmax = best.id < 0 ? 0 : best.id;
    r->max = max;
    r->log_sum = log(sum);
    r->top_n = top_n;
  }
  // Top-n rounds: each picks the best element ranked after the previous pick.
  Pick prev{INFINITY, -1};
  for (int32_t t = 0; t < top_n; ++t) {
    Pick cand{0.0f, -1};
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float v = isnan(l[i]) ? -INFINITY : l[i];
      const Pick p{v, static_cast<int32_t>(i)};
      const bool after = prev.id < 0 || Before(prev, p);
      if (after && Before(p, cand)) cand = p;
    }
    cand = BlockBest(cand, picks);
    if (threadIdx.x == 0) {
      r->top_id[t] = cand.id;
      r->top_logit[t] = cand.l;
    }
    prev = cand;
  }
}

}  // namespace

void LogitsSummary(CudaContext& ctx, const LogitsSummaryArgs& a) {
  DSV2_CHECK(a.n >= 0 && a.vocab > 0 && a.top_n >= 0 && a.top_n <= kMaxSummaryTop);
  if (a.n == 0) return;
  DSV2_CHECK(a.logits != nullptr && a.rows != nullptr && a.out != nullptr);
  DSV2_CHECK_MSG(a.n <= 0x7fffffff, "LogitsSummary: too many rows for one grid");
  const int32_t top_n = static_cast<int32_t>(std::min<int64_t>(a.top_n, a.vocab));
  cudaStream_t stream = ctx.stream();
  DSV2_LAUNCH(static_cast<unsigned>(a.n), kThreads, 0, stream, LogitsSummaryKernel)
  (a.logits, a.vocab, a.rows, top_n, a.out);
  DSV2_CUDA_LAUNCH_CHECK();
}

}  // namespace dsv2::cuda
