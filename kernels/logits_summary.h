// LogitsSummary: what a greedy step without penalties needs of a row of logits, so that only it
// (not 400 KB of logits per row) crosses from the GPU: the argmax, the log-softmax normaliser and
// the top_n most likely tokens. For row rows[j] of logits [*, vocab] (float32):
//   argmax:   the first maximal logit (NaN never wins; 0 when every logit is NaN)
//   max:      that logit
//   log_sum:  log Σ exp(l − max) over non-NaN l when max is finite (l − max in float, exp and
//             the sum in double), else log(#logits == max)
//             (so log p(id) = l(id) − max − log_sum, as coordinator/serving/logprobs.h)
//   top:      the top_n (<= kMaxSummaryTop) ids by logit, ties to the lower id, NaN as −inf
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"

namespace dsv2 {

inline constexpr int kMaxSummaryTop = 20;

struct LogitsSummaryRow {
  int32_t argmax = 0;
  float max = 0.0f;
  double log_sum = 0.0;
  int32_t top_n = 0;
  int32_t top_id[kMaxSummaryTop] = {};
  float top_logit[kMaxSummaryTop] = {};
};

struct LogitsSummaryArgs {
  const float* logits = nullptr;  // [*, vocab] on the context's device
  int64_t vocab = 0;
  const int32_t* rows = nullptr;  // [n] rows to summarise
  int64_t n = 0;
  int32_t top_n = 0;                // 0..kMaxSummaryTop
  LogitsSummaryRow* out = nullptr;  // [n] on the context's device
};

namespace cpu {
void LogitsSummary(const CpuContext& ctx, const LogitsSummaryArgs& args);
}
namespace cuda {
void LogitsSummary(CudaContext& ctx, const LogitsSummaryArgs& args);
}

inline void LogitsSummary(const ExecContext& ctx, const LogitsSummaryArgs& args) {
  if (ctx.on_cuda()) return cuda::LogitsSummary(ctx.cuda(), args);
  cpu::LogitsSummary(ctx.cpu(), args);
}

}  // namespace dsv2
