#include "coordinator/serving/logprobs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_context.h"
#include "kernels/logits_summary.h"

namespace dsv2 {
namespace {

std::vector<float> RandomLogits(int64_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> l(n);
  for (float& x : l) x = dist(gen);
  return l;
}

double LogSumExp(const std::vector<TokenLogprob>& all) {
  double sum = 0.0;
  for (const TokenLogprob& t : all) sum += std::exp(static_cast<double>(t.logprob));
  return std::log(sum);
}

TEST(LogprobsTest, NormalisedAndOrdered) {
  const int64_t vocab = 102400;
  const std::vector<float> logits = RandomLogits(vocab, 1, 4.0f);
  TokenLogprob chosen{};
  std::vector<TokenLogprob> all;
  ComputeLogprobs(logits.data(), vocab, 17, static_cast<int32_t>(vocab), &chosen, &all);
  ASSERT_EQ(static_cast<int64_t>(all.size()), vocab);
  EXPECT_NEAR(LogSumExp(all), 0.0, 1e-5);
  for (size_t i = 1; i < all.size(); ++i) ASSERT_GE(all[i - 1].logprob, all[i].logprob);
  EXPECT_EQ(chosen.id, 17);

  std::vector<TokenLogprob> top;
  ComputeLogprobs(logits.data(), vocab, 17, 20, nullptr, &top);
  ASSERT_EQ(top.size(), 20u);
  for (size_t i = 0; i < top.size(); ++i) {
    EXPECT_EQ(top[i].id, all[i].id);
    EXPECT_EQ(top[i].logprob, all[i].logprob);
  }
  for (const TokenLogprob& t : all) {
    if (t.id == 17) {
      EXPECT_EQ(t.logprob, chosen.logprob);
    }
  }
}

TEST(LogprobsTest, MatchesDirectFormulaAndIsShiftInvariant) {
  const std::vector<float> logits = {1.0f, -2.0f, 0.5f, 3.0f};
  double z = 0.0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  std::vector<float> shifted;
  for (float l : logits) shifted.push_back(l + 5000.0f);  // exp would overflow without the max
  for (int32_t id = 0; id < 4; ++id) {
    TokenLogprob a{};
    TokenLogprob b{};
    ComputeLogprobs(logits.data(), 4, id, 0, &a, nullptr);
    ComputeLogprobs(shifted.data(), 4, id, 0, &b, nullptr);
    EXPECT_NEAR(a.logprob, logits[id] - std::log(z), 1e-6);
    EXPECT_NEAR(b.logprob, a.logprob, 1e-3);  // float spacing at 5000 is ~5e-4
    EXPECT_TRUE(std::isfinite(b.logprob));
  }
}

TEST(LogprobsTest, TopTiesGoToLowerIdAndSizeIsClamped) {
  const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 0.0f, 2.0f};
  std::vector<TokenLogprob> top = {{99, 0.0f}};  // cleared first
  ComputeLogprobs(logits.data(), 5, 0, 3, nullptr, &top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 4);
  EXPECT_EQ(top[0].logprob, top[2].logprob);
  ComputeLogprobs(logits.data(), 5, 0, 9, nullptr, &top);
  ASSERT_EQ(top.size(), 5u);
  EXPECT_EQ(top[3].id, 0);
  EXPECT_EQ(top[4].id, 3);
  ComputeLogprobs(logits.data(), 5, 0, 0, nullptr, &top);
  EXPECT_TRUE(top.empty());
}

TEST(LogprobsTest, NonFiniteLogits) {
  const float nan = std::nanf("");
  std::vector<float> logits = {0.0f, -INFINITY, nan, 0.0f};
  TokenLogprob c{};
  std::vector<TokenLogprob> top;
  ComputeLogprobs(logits.data(), 4, 1, 4, &c, &top);
  EXPECT_EQ(c.logprob, -INFINITY);
  EXPECT_NEAR(top[0].logprob, std::log(0.5), 1e-6);
  EXPECT_EQ(top[0].id, 0);
  EXPECT_EQ(top[1].id, 3);
  logits = {0.0f, INFINITY, 1.0f, INFINITY};
  ComputeLogprobs(logits.data(), 4, 3, 1, &c, &top);
  EXPECT_NEAR(c.logprob, std::log(0.5), 1e-6);
  EXPECT_EQ(top[0].id, 1);
  ComputeLogprobs(logits.data(), 4, 2, 0, &c, nullptr);
  EXPECT_EQ(c.logprob, -INFINITY);
}

// A LogitsSummaryRow (what a greedy step brings back from the GPU) gives the same token as the
// sampler's argmax and the same logprobs as ComputeLogprobs over the full row, edge cases too.
TEST(LogprobsTest, SummaryEqualsFullRow) {
  const int64_t vocab = 5003;
  std::vector<std::vector<float>> rows;
  rows.push_back(RandomLogits(vocab, 3, 4.0f));
  std::vector<float> ties = RandomLogits(vocab, 4, 1.0f);
  for (int64_t i = 0; i < vocab; i += 7) ties[i] = 9.0f;  // many equal maxima: the lowest id
  rows.push_back(ties);
  std::vector<float> nan = RandomLogits(vocab, 5, 2.0f);
  nan[0] = NAN;
  nan[vocab / 2] = NAN;
  rows.push_back(nan);
  std::vector<float> inf = RandomLogits(vocab, 6, 2.0f);
  inf[11] = INFINITY;
  inf[4000] = INFINITY;
  rows.push_back(inf);
  rows.push_back(std::vector<float>(vocab, -INFINITY));
  std::vector<float> flat(vocab, NAN);
  rows.push_back(flat);
  std::vector<float> all;
  for (const auto& r : rows) all.insert(all.end(), r.begin(), r.end());
  std::vector<int32_t> ids(rows.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::vector<LogitsSummaryRow> sums(rows.size());
  const CpuContext cpu(1);
  LogitsSummary(cpu, {.logits = all.data(),
                      .vocab = vocab,
                      .rows = ids.data(),
                      .n = static_cast<int64_t>(ids.size()),
                      .top_n = kMaxSummaryTop,
                      .out = sums.data()});
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::vector<float>& l = rows[r];
    // The sampler's greedy rule: first maximum, NaN never, 0 when all are NaN.
    int32_t best = -1;
    float best_logit = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i) {
      if (l[i] > best_logit || (best < 0 && l[i] == best_logit)) {
        best_logit = l[i];
        best = static_cast<int32_t>(i);
      }
    }
    EXPECT_EQ(sums[r].argmax, best < 0 ? 0 : best) << "row " << r;
    TokenLogprob want_chosen{}, got_chosen{};
    std::vector<TokenLogprob> want_top, got_top;
    ComputeLogprobs(l.data(), vocab, sums[r].argmax, kMaxSummaryTop, &want_chosen, &want_top);
    SummaryLogprobs(sums[r], sums[r].argmax, kMaxSummaryTop, &got_chosen, &got_top);
    EXPECT_EQ(got_chosen.id, want_chosen.id);
    EXPECT_NEAR(got_chosen.logprob, want_chosen.logprob, 1e-5) << "row " << r;
    ASSERT_EQ(got_top.size(), want_top.size());
    for (size_t i = 0; i < want_top.size(); ++i) {
      EXPECT_EQ(got_top[i].id, want_top[i].id) << "row " << r << " rank " << i;
      if (std::isfinite(want_top[i].logprob)) {
        EXPECT_NEAR(got_top[i].logprob, want_top[i].logprob, 1e-5) << "row " << r;
      } else {
        EXPECT_EQ(got_top[i].logprob, want_top[i].logprob) << "row " << r;
      }
    }
  }
}

// The normaliser on every ISA this processor runs (vectorised double e^x on AVX2 / AVX-512)
// equals a plain double sum of std::exp to 1e-14, on rows with NaN, -inf, terms that underflow
// (l − max below -745) and lengths that end in a partial vector; argmax and top ids the same.
TEST(LogprobsTest, SummaryNormaliserOnEveryIsa) {
  std::vector<std::vector<float>> rows;
  for (int64_t vocab : {1, 3, 8, 13, 129280}) rows.push_back(RandomLogits(vocab, 7, 30.0f));
  std::vector<float> wide = RandomLogits(1001, 8, 500.0f);  // many terms below e^-745
  wide[5] = NAN;
  wide[6] = -INFINITY;
  wide[999] = 2000.0f;
  rows.push_back(wide);
  for (const std::vector<float>& row : rows) {
    const int64_t vocab = static_cast<int64_t>(row.size());
    const float m = *std::max_element(row.begin(), row.end(), [](float a, float b) {
      return std::isnan(a) || (!std::isnan(b) && a < b);
    });
    double want = 0.0;
    for (float l : row) want += std::isnan(l) ? 0.0 : std::exp(static_cast<double>(l - m));
    for (CpuIsa isa : kAllCpuIsas) {
      if (!CpuSupports(isa)) {
        std::printf("SummaryNormaliserOnEveryIsa: %s not supported by this CPU, not tested\n",
                    CpuIsaName(isa));
        continue;
      }
      const CpuContext cpu(1, isa);
      const int32_t id = 0;
      LogitsSummaryRow got;
      LogitsSummary(
          cpu,
          {.logits = row.data(), .vocab = vocab, .rows = &id, .n = 1, .top_n = 5, .out = &got});
      EXPECT_EQ(got.max, m) << CpuIsaName(isa) << " vocab " << vocab;
      EXPECT_NEAR(got.log_sum, std::log(want), 1e-14 * std::max(1.0, std::log(want)))
          << CpuIsaName(isa) << " vocab " << vocab;
    }
  }
}

}  // namespace
}  // namespace dsv2
