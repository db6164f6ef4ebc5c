#include "kernels/logits_summary.h"

#include <cmath>
#include <limits>

#include "kernels/check.h"

namespace dsv2::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Inserts (l, id) into the sorted top list if it ranks there: logit descending, ids ascending.
void Offer(LogitsSummaryRow& r, int32_t k, float l, int32_t id) {
  if (std::isnan(l)) l = -kInf;
  if (r.top_n == k && !(l > r.top_logit[k - 1])) return;  // a tie with the k-th has a higher id
  int32_t pos = r.top_n < k ? r.top_n++ : k - 1;
  for (; pos > 0 && l > r.top_logit[pos - 1]; --pos) {
    r.top_logit[pos] = r.top_logit[pos - 1];
    r.top_id[pos] = r.top_id[pos - 1];
  }
  r.top_logit[pos] = l;
  r.top_id[pos] = id;
}

}  // namespace

void LogitsSummary(const CpuContext& ctx, const LogitsSummaryArgs& a) {
  DSV2_CHECK(a.n >= 0 && a.vocab > 0 && a.top_n >= 0 && a.top_n <= kMaxSummaryTop);
  if (a.n == 0) return;
  DSV2_CHECK(a.logits != nullptr && a.rows != nullptr && a.out != nullptr);
  ctx.ParallelFor(a.n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const float* l = a.logits + static_cast<int64_t>(a.rows[j]) * a.vocab;  // [vocab]
      LogitsSummaryRow r;
      int32_t best = -1;
      float best_logit = -kInf;
      for (int64_t i = 0; i < a.vocab; ++i) {
        if (l[i] > best_logit || (best < 0 && l[i] == best_logit)) {
          best_logit = l[i];
          best = static_cast<int32_t>(i);
        }
      }
      r.argmax = best < 0 ? 0 : best;
      r.max = best_logit;
      double sum = 0.0;
      if (std::isfinite(best_logit)) {
        // exp in double, as the CUDA twin: each term is then within 1 ulp of double on both
        // devices, so the twins' log_sum agree to ~1e-15 whatever the order of the sum (a
        // float expf would not: CUDA's is within 2 ulp of float, glibc's correctly rounded).
        for (int64_t i = 0; i < a.vocab; ++i)
          sum += std::isnan(l[i]) ? 0.0 : std::exp(static_cast<double>(l[i] - best_logit));
      } else {
        // NaN counts as −inf here, as in coordinator/serving/logprobs.cc.
        for (int64_t i = 0; i < a.vocab; ++i)
          sum += (std::isnan(l[i]) ? -kInf : l[i]) == best_logit;
      }
      r.log_sum = std::log(sum);
      const int32_t k = static_cast<int32_t>(std::min<int64_t>(a.top_n, a.vocab));
      for (int64_t i = 0; i < a.vocab && k > 0; ++i) Offer(r, k, l[i], static_cast<int32_t>(i));
      a.out[j] = r;
    }
  });
}

}  // namespace dsv2::cpu
