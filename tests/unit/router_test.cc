// The router rules of REFERENCE.md §4, checked directly (the HF port covers only
// norm_topk_prob = false, so renormalization is tested here against the formula).
#include "coordinator/model/router.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "common/model_config.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

ModelConfig RouterConfig(int experts, int k) {
  ModelConfig c;
  c.n_routed_experts = experts;
  c.num_experts_per_tok = k;
  return c;
}

std::vector<float> Softmax(const std::vector<float>& x) {
  double m = *std::max_element(x.begin(), x.end()), s = 0;
  std::vector<float> p(x.size());
  for (float v : x) s += std::exp(v - m);
  for (size_t i = 0; i < x.size(); ++i) p[i] = std::exp(x[i] - m) / s;
  return p;
}

TEST(RouterTest, GreedyTakesTopScoresScaled) {
  ModelConfig c = RouterConfig(8, 3);
  c.routed_scaling_factor = 2.0;
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.0f, 0.5f, 2.5f, -3.0f, 0.0f};
  const std::vector<float> p = Softmax(logits);
  RouterSelection s = RouteTokens(c, logits.data(), 1);
  EXPECT_EQ(s.expert, (std::vector<int32_t>{1, 5, 3}));
  EXPECT_NEAR(s.weight[0], 2.0 * p[1], 1e-6);
  EXPECT_NEAR(s.weight[1], 2.0 * p[5], 1e-6);
  EXPECT_NEAR(s.weight[2], 2.0 * p[3], 1e-6);
}

TEST(RouterTest, NormTopkProbRenormalizesAndSkipsScaling) {
  ModelConfig c = RouterConfig(8, 3);
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 16.0;  // applied only in the else branch (V2 code)
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.0f, 0.5f, 2.5f, -3.0f, 0.0f};
  RouterSelection s = RouteTokens(c, logits.data(), 1);
  EXPECT_NEAR(std::accumulate(s.weight.begin(), s.weight.end(), 0.0f), 1.0f, 1e-6);
}

TEST(RouterTest, SingleExpertIsNotRenormalized) {
  ModelConfig c = RouterConfig(4, 1);
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 3.0;
  std::vector<float> logits = {0.0f, 1.0f, 0.0f, 0.0f};
  const std::vector<float> p = Softmax(logits);
  RouterSelection s = RouteTokens(c, logits.data(), 1);
  EXPECT_EQ(s.expert[0], 1);
  EXPECT_NEAR(s.weight[0], 3.0 * p[1], 1e-6);  // k == 1: the else branch scales
}

TEST(RouterTest, GroupLimitedGreedyKeepsBestGroups) {
  // 4 groups of 2. Group maxima: g0 = 5.0, g1 = 4.0, g2 = 4.5, g3 = 1.0 → keep g0 and g2.
  ModelConfig c = RouterConfig(8, 3);
  c.topk_method = TopkMethod::kGroupLimitedGreedy;
  c.n_group = 4;
  c.topk_group = 2;
  // Expert 3 (group 1) has the third best score overall but its group is dropped.
  std::vector<float> logits = {5.0f, 0.0f, 1.0f, 4.0f, 4.5f, 3.9f, 1.0f, -2.0f};
  const std::vector<float> p = Softmax(logits);
  RouterSelection s = RouteTokens(c, logits.data(), 1);
  EXPECT_EQ(s.expert, (std::vector<int32_t>{0, 4, 5}));
  EXPECT_NEAR(s.weight[2], p[5], 1e-6);
}

TEST(RouterTest, ManyTokensIndependent) {
  ModelConfig c = RouterConfig(4, 2);
  std::vector<float> logits = {1, 2, 3, 4, 4, 3, 2, 1};
  RouterSelection s = RouteTokens(c, logits.data(), 2);
  EXPECT_EQ(s.expert, (std::vector<int32_t>{3, 2, 0, 1}));
}

}  // namespace
}  // namespace dsv2
