#include "coordinator/serving/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;

// Draws `n` tokens from fresh copies of `logits` (Sample edits them in place).
std::vector<int64_t> Histogram(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    std::vector<float> scratch = logits;
    ++counts[sampler.Sample(scratch.data())];
  }
  return counts;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) p[i] = std::exp((logits[i] - m) / temperature);
  const double z = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= z;
  return p;
}

// Pearson chi-square of observed counts against probabilities (cells with p = 0 must be empty).
double ChiSquare(const std::vector<int64_t>& counts, const std::vector<double>& p, int n) {
  double chi2 = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the kept set";
      continue;
    }
    const double expected = p[i] * n;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::vector<float> RandomLogits(int64_t n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 gen(seed);  // test data only; the sampler's own RNG is platform-independent
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> l(n);
  for (float& x : l) x = dist(gen);
  return l;
}

int32_t ArgmaxOf(const std::vector<float>& l) {
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

TEST(SamplerValidationTest, AcceptsDefaultsAndBoundaries) {
  EXPECT_TRUE(ValidateSamplingOptions({}).ok());
  SamplingOptions o;
  o.temperature = 0.0f;
  o.top_p = 1.0f;
  o.min_p = 1.0f;
  o.frequency_penalty = -2.0f;
  o.presence_penalty = 2.0f;
  o.repetition_penalty = 1e-3f;
  EXPECT_TRUE(ValidateSamplingOptions(o).ok());
}

TEST(SamplerValidationTest, NamesTheField) {
  struct Case {
    SamplingOptions options;
    const char* message;
  };
  const float nan = std::nanf("");
  const float inf = INFINITY;
  std::vector<Case> cases;
  auto with = [](auto set) {
    SamplingOptions o;
    set(o);
    return o;
  };
  cases.push_back({with([](auto& o) { o.temperature = -1; }),
                   "sampling.temperature must be finite and >= 0, got -1"});
  cases.push_back({with([&](auto& o) { o.temperature = inf; }), "sampling.temperature"});
  cases.push_back({with([&](auto& o) { o.temperature = nan; }), "sampling.temperature"});
  cases.push_back({with([](auto& o) { o.top_k = -3; }), "sampling.top_k must be >= 0, got -3"});
  cases.push_back(
      {with([](auto& o) { o.top_p = 1.5f; }), "sampling.top_p must be in (0, 1], got 1.5"});
  cases.push_back(
      {with([](auto& o) { o.top_p = 0.0f; }), "sampling.top_p must be in (0, 1], got 0"});
  cases.push_back({with([&](auto& o) { o.top_p = nan; }), "sampling.top_p"});
  cases.push_back(
      {with([](auto& o) { o.min_p = -0.5f; }), "sampling.min_p must be in [0, 1], got -0.5"});
  cases.push_back({with([](auto& o) { o.min_p = 1.25f; }), "sampling.min_p"});
  cases.push_back({with([](auto& o) { o.repetition_penalty = 0.0f; }),
                   "sampling.repetition_penalty must be finite and > 0, got 0"});
  cases.push_back(
      {with([&](auto& o) { o.repetition_penalty = inf; }), "sampling.repetition_penalty"});
  cases.push_back({with([](auto& o) { o.frequency_penalty = 2.5f; }),
                   "sampling.frequency_penalty must be in [-2, 2], got 2.5"});
  cases.push_back(
      {with([&](auto& o) { o.frequency_penalty = nan; }), "sampling.frequency_penalty"});
  cases.push_back({with([](auto& o) { o.presence_penalty = -3.0f; }),
                   "sampling.presence_penalty must be in [-2, 2], got -3"});
  cases.push_back({with([&](auto& o) { o.presence_penalty = -inf; }), "sampling.presence_penalty"});
  for (const Case& c : cases) {
    const absl::Status status = ValidateSamplingOptions(c.options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
}

TEST(SamplerRngTest, MatchesReferenceStream) {
  // splitmix64's first output for seed 0 is the published 0xe220a8397b1dcdaf; these pin the
  // xoshiro256** stream built on it, so a seed means the same tokens on every platform.
  Xoshiro256 rng(0);
  EXPECT_EQ(rng.Next(), 0x99ec5f36cb75f2b4ull);
  EXPECT_EQ(rng.Next(), 0xbf6e1f784956452aull);
  EXPECT_EQ(rng.Next(), 0x1a5f849d4933e6e0ull);
  Xoshiro256 rng42(42);
  EXPECT_EQ(rng42.Next(), 0x15780b2e0c2ec716ull);
  for (int i = 0; i < 1000; ++i) {
    const double u = rng42.NextDouble();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(SamplerGreedyTest, ArgmaxWithTiesToLowestIdAndNaNIgnored) {
  SamplingOptions o;
  o.temperature = 0.0f;
  Sampler sampler(o, 6, {});
  std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  EXPECT_EQ(sampler.Sample(l.data()), 1);
  l = {std::nanf(""), -1.0f, 3.0f, std::nanf(""), 3.0f, 2.0f};
  EXPECT_EQ(sampler.Sample(l.data()), 2);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::vector<float> r = RandomLogits(6, seed);
    const int32_t expected = ArgmaxOf(r);
    EXPECT_EQ(sampler.Sample(r.data()), expected);
  }
}

TEST(SamplerDistributionTest, TemperatureMatchesSoftmax) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -2.0f, 0.7f};
  for (float t : {1.0f, 0.6f, 2.0f}) {
    SamplingOptions o;
    o.temperature = t;
    o.seed = 7;
    Sampler sampler(o, static_cast<int64_t>(logits.size()), {});
    const int n = 100000;
    const double chi2 = ChiSquare(Histogram(sampler, logits, n), Softmax(logits, t), n);
    // 7 degrees of freedom: P(chi2 > 29.9) = 1e-4.
    EXPECT_LT(chi2, 29.9) << "temperature " << t;
  }
}

TEST(SamplerDistributionTest, TopKOneAndTinyTopPAreGreedy) {
  for (uint32_t seed = 0; seed < 30; ++seed) {
    const std::vector<float> logits = RandomLogits(5000, seed, 1.0f);
    SamplingOptions k1;
    k1.top_k = 1;
    k1.seed = seed;
    SamplingOptions p0;
    p0.top_p = 1e-6f;
    p0.temperature = 1.5f;
    p0.seed = seed;
    Sampler a(k1, 5000, {});
    Sampler b(p0, 5000, {});
    std::vector<float> x = logits;
    std::vector<float> y = logits;
    EXPECT_EQ(a.Sample(x.data()), ArgmaxOf(logits));
    EXPECT_EQ(b.Sample(y.data()), ArgmaxOf(logits));
  }
}

// Probabilities 0.4, 0.3, 0.2, 0.1 (as logits), and what each filter keeps of them.
TEST(SamplerDistributionTest, TopKTopPMinPKeepTheRightTokens) {
  const std::vector<float> logits = LogitsOf({0.1, 0.4, 0.2, 0.3});  // ids 1, 3, 2, 0
  struct Case {
    int32_t top_k;
    float top_p;
    float min_p;
    std::vector<double> expected;
  };
  const std::vector<Case> cases = {
      {2, 1.0f, 0.0f, {0, 4.0 / 7, 0, 3.0 / 7}},
      {0, 0.5f, 0.0f, {0, 4.0 / 7, 0, 3.0 / 7}},  // 0.4 < 0.5 <= 0.7
      {0, 0.75f, 0.0f, {0, 4.0 / 9, 2.0 / 9, 3.0 / 9}},
      // Top-p renormalises over the top-k survivors: 0.44, 0.78 already reaches 0.75.
      {3, 0.75f, 0.0f, {0, 4.0 / 7, 0, 3.0 / 7}},
      {0, 1.0f, 0.3f, {0, 4.0 / 9, 2.0 / 9, 3.0 / 9}},  // drops p < 0.12
      {0, 1.0f, 0.6f, {0, 4.0 / 7, 0, 3.0 / 7}},        // drops p < 0.24
      {0, 1.0f, 1.0f, {0, 1, 0, 0}},
      {10, 1.0f, 0.0f, {0.1, 0.4, 0.2, 0.3}},  // k above the vocabulary: off
  };
  for (const Case& c : cases) {
    SamplingOptions o;
    o.top_k = c.top_k;
    o.top_p = c.top_p;
    o.min_p = c.min_p;
    o.seed = 11;
    Sampler sampler(o, 4, {});
    const int n = 40000;
    // At most 3 degrees of freedom: P(chi2 > 21.1) = 1e-4.
    EXPECT_LT(ChiSquare(Histogram(sampler, logits, n), c.expected, n), 21.1)
        << "top_k " << c.top_k << " top_p " << c.top_p << " min_p " << c.min_p;
  }
}

// A direct implementation of the documented contract: full sort, cumulative sums, then the draw
// walks the kept tokens in id order with weights exp(l - max) and the same uniform number.
int32_t ReferenceSample(const SamplingOptions& o, std::vector<float> l, Xoshiro256& rng) {
  const int64_t n = static_cast<int64_t>(l.size());
  for (float& x : l) x /= o.temperature;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  const float m = l[order[0]];
  int64_t keep = (o.top_k > 0 && o.top_k < n) ? o.top_k : n;
  if (o.top_p < 1.0f) {
    double z = 0.0;
    for (int64_t i = 0; i < keep; ++i) z += std::exp(l[order[i]] - m);
    double acc = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      acc += std::exp(l[order[i]] - m);
      if (acc >= o.top_p * z) {
        keep = i + 1;
        break;
      }
    }
  }
  const float min_logit = o.min_p > 0.0f ? m + std::log(o.min_p) : -INFINITY;
  while (keep > 1 && l[order[keep - 1]] < min_logit) --keep;
  std::vector<int32_t> kept(order.begin(), order.begin() + keep);
  std::sort(kept.begin(), kept.end());
  double z = 0.0;
  for (int32_t id : kept) z += std::exp(l[id] - m);
  const double r = rng.NextDouble() * z;
  double acc = 0.0;
  for (int32_t id : kept) {
    acc += std::exp(l[id] - m);
    if (acc > r) return id;
  }
  return kept.back();
}

TEST(SamplerDistributionTest, MatchesFullSortReferenceExactly) {
  const std::vector<SamplingOptions> options = {
      {.temperature = 1.0f},
      {.temperature = 0.8f, .top_k = 50},
      {.temperature = 1.0f, .top_p = 0.9f},
      {.temperature = 3.0f, .top_p = 0.95f},  // flat: a large nucleus
      {.temperature = 0.7f, .top_k = 40, .top_p = 0.8f},
      {.temperature = 1.0f, .top_k = 2000, .top_p = 0.5f, .min_p = 0.01f},
      {.temperature = 1.2f, .min_p = 0.05f},
      {.temperature = 1.0f, .top_p = 0.9f, .min_p = 0.2f},
  };
  // Quantised logits put many exact ties on the cuts (broken by id).
  struct Shape {
    int64_t vocab;
    uint32_t steps;
    float quantum;
  };
  for (const Shape& shape : {Shape{3000, 40, 0.0f}, Shape{102400, 5, 0.0f}, Shape{20000, 10, 0.25f},
                             Shape{20000, 5, 8.0f}}) {
    for (size_t k = 0; k < options.size(); ++k) {
      SamplingOptions o = options[k];
      o.seed = 1000 + k;
      Sampler sampler(o, shape.vocab, {});
      Xoshiro256 rng(o.seed);
      for (uint32_t step = 0; step < shape.steps; ++step) {
        std::vector<float> logits = RandomLogits(shape.vocab, 100 * k + step);
        if (shape.quantum > 0.0f) {
          for (float& x : logits) x = std::round(x / shape.quantum) * shape.quantum;
        }
        std::vector<float> scratch = logits;
        ASSERT_EQ(sampler.Sample(scratch.data()), ReferenceSample(o, logits, rng))
            << "options " << k << " vocab " << shape.vocab << " quantum " << shape.quantum
            << " step " << step;
      }
    }
  }
}

TEST(SamplerPenaltyTest, RepetitionPenaltyCoversPromptAndOutput) {
  SamplingOptions o;
  o.temperature = 0.0f;
  o.repetition_penalty = 1.2f;
  Sampler sampler(o, 4, /*prompt_tokens=*/{0, 0, 2});
  std::vector<float> l = {2.0f, 1.9f, -1.0f, -1.1f};  // 2 / 1.2 = 1.67 < 1.9
  EXPECT_EQ(sampler.Sample(l.data()), 1);
  l = {-5.0f, -5.0f, -1.0f, -1.1f};  // -1 * 1.2 = -1.2 < -1.1
  EXPECT_EQ(sampler.Sample(l.data()), 3);
  sampler.Accept(1);
  l = {-5.0f, 1.9f, -5.0f, 1.7f};  // 1.9 / 1.2 = 1.58 < 1.7
  EXPECT_EQ(sampler.Sample(l.data()), 3);
  Sampler off({.temperature = 0.0f}, 4, {0});
  l = {2.0f, 1.9f, -1.0f, -1.1f};
  EXPECT_EQ(off.Sample(l.data()), 0);
}

TEST(SamplerPenaltyTest, FrequencyAndPresenceCountGeneratedTokensOnly) {
  SamplingOptions freq;
  freq.temperature = 0.0f;
  freq.frequency_penalty = 0.3f;
  Sampler f(freq, 3, /*prompt_tokens=*/{0, 0, 0, 0});
  std::vector<float> l = {1.0f, 0.5f, 0.0f};
  EXPECT_EQ(f.Sample(l.data()), 0);  // the prompt does not count
  f.Accept(0);
  l = {1.0f, 0.5f, 0.0f};
  EXPECT_EQ(f.Sample(l.data()), 0);  // 0.7 > 0.5
  f.Accept(0);
  l = {1.0f, 0.5f, 0.0f};
  EXPECT_EQ(f.Sample(l.data()), 1);  // 0.4 < 0.5

  SamplingOptions pres;
  pres.temperature = 0.0f;
  pres.presence_penalty = 0.6f;
  Sampler p(pres, 3, {});
  p.Accept(0);
  l = {1.0f, 0.5f, 0.0f};
  EXPECT_EQ(p.Sample(l.data()), 1);  // 0.4 < 0.5, once or many times
  p.Accept(0);
  p.Accept(0);
  l = {1.0f, 0.3f, 0.0f};
  EXPECT_EQ(p.Sample(l.data()), 0);  // 0.4 > 0.3

  SamplingOptions encourage;
  encourage.temperature = 0.0f;
  encourage.presence_penalty = -1.0f;
  Sampler e(encourage, 3, {});
  e.Accept(2);
  l = {1.0f, 0.5f, 0.2f};
  EXPECT_EQ(e.Sample(l.data()), 2);  // 1.2 > 1.0
  e.Accept(-1);                      // out of range: ignored
  e.Accept(3);
}

TEST(SamplerPenaltyTest, PenaltiesApplyBeforeTemperatureAndFilters) {
  // With top_k = 1 the draw is the argmax of the penalised logits.
  SamplingOptions o;
  o.top_k = 1;
  o.temperature = 0.5f;
  o.frequency_penalty = 1.0f;
  Sampler sampler(o, 3, {});
  sampler.Accept(0);
  std::vector<float> l = {1.0f, 0.5f, 0.0f};
  EXPECT_EQ(sampler.Sample(l.data()), 1);
}

TEST(SamplerReproducibilityTest, SameSeedSameTokensDifferentSeedDifferent) {
  auto run = [](uint64_t seed) {
    SamplingOptions o;
    o.temperature = 1.3f;
    o.top_p = 0.95f;
    o.top_k = 500;
    o.frequency_penalty = 0.2f;
    o.repetition_penalty = 1.1f;
    o.seed = seed;
    Sampler sampler(o, 2000, {5, 6, 7});
    std::vector<int32_t> tokens;
    for (uint32_t step = 0; step < 200; ++step) {
      std::vector<float> l = RandomLogits(2000, step, 0.5f);
      const int32_t t = sampler.Sample(l.data());
      sampler.Accept(t);
      tokens.push_back(t);
    }
    return tokens;
  };
  const std::vector<int32_t> a = run(123);
  EXPECT_EQ(a, run(123));
  const std::vector<int32_t> b = run(124);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, 50);
}

TEST(SamplerEdgeTest, NonFiniteLogits) {
  SamplingOptions o;
  o.seed = 3;
  Sampler sampler(o, 5, {});
  const float nan = std::nanf("");
  for (int i = 0; i < 200; ++i) {
    std::vector<float> l = {nan, -INFINITY, 0.0f, nan, 0.0f};
    const int32_t t = sampler.Sample(l.data());
    EXPECT_TRUE(t == 2 || t == 4) << t;
  }
  std::vector<float> l = {0.0f, INFINITY, 5.0f, INFINITY, nan};
  EXPECT_EQ(sampler.Sample(l.data()), 1);
  l = {-INFINITY, -INFINITY, nan, -INFINITY, -INFINITY};
  EXPECT_EQ(sampler.Sample(l.data()), 0);
  SamplingOptions nucleus;
  nucleus.top_p = 0.9f;
  nucleus.top_k = 2;
  Sampler s2(nucleus, 5, {});
  for (int i = 0; i < 50; ++i) {
    l = {nan, 1.0f, -INFINITY, 1.0f, nan};
    const int32_t t = s2.Sample(l.data());
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

}  // namespace
}  // namespace dsv2
