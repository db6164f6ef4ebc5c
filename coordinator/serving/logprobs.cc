#include "coordinator/serving/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/check.h"

namespace dsv2 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Higher logit first, ties to the lower id; NaN sorts as -inf.
inline double Key(float l) { return std::isnan(l) ? -kInf : static_cast<double>(l); }

}  // namespace

void ComputeLogprobs(const float* raw_logits, int64_t vocab, int32_t chosen, int32_t top_n,
                     TokenLogprob* chosen_out, std::vector<TokenLogprob>* top_out) {
  DSV2_CHECK(vocab > 0);
  DSV2_CHECK(chosen_out == nullptr || (chosen >= 0 && chosen < vocab));

  // Eight lanes, so that the loop is not one long chain of dependent comparisons; NaN never wins.
  float lane_max[8];
  std::fill(lane_max, lane_max + 8, -std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < vocab; ++i) {
    const float l = raw_logits[i];
    lane_max[i % 8] = l > lane_max[i % 8] ? l : lane_max[i % 8];
  }
  const double max_logit = *std::max_element(lane_max, lane_max + 8);

  // log p_i = l_i - lse. With a finite maximum, lse = max + log(sum exp(l - max)): each term in
  // float (relative error ~1e-7, below what a float logprob can show), the sum in double over
  // four lanes (>= 1, so never log(0)). With +inf (or only -inf/NaN) the mass sits on the
  // maximal logits, shared equally.
  const bool finite_max = std::isfinite(max_logit);
  double sum = 0.0;
  int64_t at_max = 0;
  if (finite_max) {
    const float m = static_cast<float>(max_logit);
    double lane[4] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t i = 0; i < vocab; ++i) {
      const float l = raw_logits[i];
      lane[i % 4] += std::isnan(l) ? 0.0f : std::exp(l - m);
    }
    sum = (lane[0] + lane[1]) + (lane[2] + lane[3]);
  } else {
    for (int64_t i = 0; i < vocab; ++i) at_max += Key(raw_logits[i]) == max_logit ? 1 : 0;
  }
  const double log_sum = std::log(finite_max ? sum : static_cast<double>(at_max));
  auto logprob = [&](int32_t id) -> float {
    const double l = Key(raw_logits[id]);
    if (finite_max) return static_cast<float>(l - max_logit - log_sum);
    return l == max_logit ? static_cast<float>(-log_sum) : -std::numeric_limits<float>::infinity();
  };

  if (chosen_out != nullptr) *chosen_out = {chosen, logprob(chosen)};
  if (top_out == nullptr) return;
  top_out->clear();
  const int64_t k = std::min<int64_t>(std::max(top_n, 0), vocab);
  if (k == 0) return;

  std::vector<TokenLogprob>& top = *top_out;
  top.reserve(k);
  auto better = [&](int32_t a, int32_t b) {
    const double la = Key(raw_logits[a]);
    const double lb = Key(raw_logits[b]);
    return la > lb || (la == lb && a < b);
  };
  if (k > 64) {
    std::vector<int32_t> ids(vocab);
    for (int64_t i = 0; i < vocab; ++i) ids[i] = static_cast<int32_t>(i);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
    for (int64_t j = 0; j < k; ++j) top.push_back({ids[j], logprob(ids[j])});
    return;
  }
  // Small k (the API allows up to 20): one pass keeping the k best in order; a token enters only
  // if strictly better than the current k-th, since any tie with it has a higher id.
  double entry = -kInf;  // the k-th's key once there are k; below that nothing can enter
  for (int64_t i = 0; i < vocab; ++i) {
    if (!(static_cast<double>(raw_logits[i]) > entry) && static_cast<int64_t>(top.size()) == k) {
      continue;  // also NaN, and a tie with the k-th
    }
    const int32_t id = static_cast<int32_t>(i);
    if (static_cast<int64_t>(top.size()) == k) top.pop_back();
    auto pos = std::upper_bound(top.begin(), top.end(), id,
                                [&](int32_t a, const TokenLogprob& t) { return better(a, t.id); });
    top.insert(pos, TokenLogprob{id, 0.0f});
    if (static_cast<int64_t>(top.size()) == k) entry = Key(raw_logits[top.back().id]);
  }
  for (TokenLogprob& t : top) t.logprob = logprob(t.id);
}

void SummaryLogprobs(const LogitsSummaryRow& s, int32_t chosen, int32_t top_n,
                     TokenLogprob* chosen_out, std::vector<TokenLogprob>* top_out) {
  DSV2_CHECK(chosen == s.argmax && top_n <= s.top_n);
  const bool finite_max = std::isfinite(s.max);
  // As ComputeLogprobs: l - max - log_sum, or the mass shared by the maximal logits.
  auto logprob = [&](float l) -> float {
    if (finite_max) return static_cast<float>(static_cast<double>(l) - s.max - s.log_sum);
    return l == s.max ? static_cast<float>(-s.log_sum) : -std::numeric_limits<float>::infinity();
  };
  if (chosen_out != nullptr) *chosen_out = {chosen, logprob(s.max)};
  if (top_out == nullptr) return;
  top_out->clear();
  for (int32_t i = 0; i < std::max(top_n, 0); ++i) {
    top_out->push_back({s.top_id[i], logprob(s.top_logit[i])});
  }
}

}  // namespace dsv2
