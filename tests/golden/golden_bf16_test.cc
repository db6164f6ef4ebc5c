// The golden fixtures in bfloat16 against the same model in float32 on the same device (itself
// held to the reference by golden_test / golden_cuda_test): every logit row within 2e-2
// relative, and the greedy token identical wherever the reference's top-1/top-2 margin exceeds
// what that error can move. Built twice: golden_bf16_test on the CPU (its bf16 mode is the CPU
// twin of the GPU's, rounding at the same points), and tests/gpu's golden_bf16_cuda_test
// (DSV2_GOLDEN_ON_CUDA), skipped without a CUDA device.
//
// One exception to the row bar, and only one: routing is a discrete choice. Where float32 ranks
// the k-th and (k+1)-th expert of a token within rounding of each other, bfloat16 may pick the
// other one, and that token's row then carries a whole expert's difference (2-3% of the row on
// the lite fixture, whose 16 experts share top-6 weights of about 0.06 each; transformers' own
// bf16 run flips at other tokens). Such a row is exempt from the 2e-2 bar only when every
// expert the two runs disagree on had, in the run that chose it, a weight within kTieTolerance
// of a weight of an expert the other run chose instead. Every other row, and every MoE
// decision, is checked; at most one row in ten may be exempt.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

constexpr double kBf16RowTolerance = 2e-2;
constexpr double kTieTolerance = 0.05;  // relative, between routing weights of swapped experts

#ifdef DSV2_GOLDEN_ON_CUDA
constexpr Device kDevice = Device::kCuda;
#else
constexpr Device kDevice = Device::kCpu;
#endif

// Each logits row's routing: per MoE layer, the chosen experts and their weights.
using Routing = std::map<int64_t, std::map<int32_t, float>>;  // layer -> expert -> weight

// Records the routing of every token of the forward passes, by logits row (one per token).
class RoutingRecorder : public RouterObserver {
 public:
  void Observe(int64_t layer, const RouterSelection& sel) override {
    for (int64_t t = 0; t < sel.n_tokens; ++t) {
      std::map<int32_t, float>& chosen = rows[first_row + t][layer];
      for (int64_t k = 0; k < sel.top_k; ++k) {
        chosen[sel.expert[t * sel.top_k + k]] = sel.weight[t * sel.top_k + k];
      }
    }
  }
  int64_t first_row = 0;  // the logits row of the next pass's first token
  std::map<int64_t, Routing> rows;
};

struct DtypeRun {
  std::unique_ptr<DeepseekV2Model> model;
  std::unique_ptr<CpuContext> cpu;  // on the CPU: the context, in the run's dtype
  std::unique_ptr<ExecContext> ctx;
  RoutingRecorder routing;
};

// True when the two runs chose the same experts at every layer, or when each expert only one of
// them chose is within kTieTolerance (by weight) of an expert only the other chose: a near tie
// that rounding can decide either way.
bool SameRoutingOrNearTie(const Routing& a, const Routing& b, bool* tie) {
  *tie = false;
  for (const auto& [layer, chosen_a] : a) {
    const auto it = b.find(layer);
    if (it == b.end()) return false;
    const std::map<int32_t, float>& chosen_b = it->second;
    std::vector<float> only_a, only_b;
    for (const auto& [e, w] : chosen_a) {
      if (!chosen_b.contains(e)) only_a.push_back(w);
    }
    for (const auto& [e, w] : chosen_b) {
      if (!chosen_a.contains(e)) only_b.push_back(w);
    }
    if (only_a.empty()) continue;
    auto near = [](float w, const std::vector<float>& others) {
      return std::any_of(others.begin(), others.end(), [w](float o) {
        return std::abs(w - o) <= kTieTolerance * std::max(std::abs(w), std::abs(o));
      });
    };
    for (float w : only_a) {
      if (!near(w, only_b)) return false;
    }
    for (float w : only_b) {
      if (!near(w, only_a)) return false;
    }
    *tie = true;
  }
  return true;
}

// Top-1 index and its margin over the runner-up.
std::pair<int32_t, float> TopWithMargin(const float* v, int64_t n) {
  int32_t best = 0;
  for (int64_t i = 1; i < n; ++i) best = v[i] > v[best] ? static_cast<int32_t>(i) : best;
  float second = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (i != best) second = std::max(second, v[i]);
  }
  return {best, v[best] - second};
}

class GoldenBf16Test : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (kDevice == Device::kCuda) {
      const absl::StatusOr<CudaDeviceInfo> gpu = ProbeCudaDevice(0);
      if (!gpu.ok()) GTEST_SKIP() << gpu.status().message();
    }
    dir_ = absl::StrCat(TestDataDir(), "/golden/", GetParam());
    for (DType dt : {DType::kF32, DType::kBF16}) {
      auto model = DeepseekV2Model::Load(dir_, {}, {.device = kDevice, .dtype = dt});
      ASSERT_TRUE(model.ok()) << model.status();
      DtypeRun run;
      run.model = std::move(*model);
      if (kDevice == Device::kCuda) {
        run.ctx = std::make_unique<ExecContext>(*run.model->cuda_context());
      } else {
        run.cpu = std::make_unique<CpuContext>(0, DetectCpuIsa(), dt);
        run.ctx = std::make_unique<ExecContext>(*run.cpu);
      }
      (dt == DType::kF32 ? f32_ : bf16_) = std::move(run);
    }
    for (DtypeRun* run : {&f32_, &bf16_}) run->model->SetRouterObserver(&run->routing);
    auto ref = SafetensorsFile::Open(dir_ + "/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    const int n = std::stoi(ref.value()->metadata().at("num_prompts"));
    for (int i = 0; i < n; ++i) {
      prompts_.push_back(Ints(ref.value()->tensors().at(absl::StrCat("prompt.", i, ".ids"))));
    }
  }

  // Prompt logits [len, vocab] of `run`, then `steps` greedy tokens through its cache
  // (following `follow` when given, so that both runs see the same tokens).
  std::vector<float> Logits(DtypeRun& run, const std::vector<int32_t>& prompt,
                            const std::vector<int32_t>* follow, std::vector<int32_t>* chosen) {
    const int64_t vocab = run.model->config().vocab_size;
    absl::StatusOr<LatentKvCache> cache = run.model->MakeCache(16, 16);
    EXPECT_TRUE(cache.ok()) << cache.status();
    const int64_t seq = cache->AddSequence();
    ForwardBatch batch;
    batch.Add(seq, 0, prompt, /*all_logits=*/true);
    std::vector<float> all, logits;
    run.routing.rows.clear();
    run.routing.first_row = 0;
    EXPECT_TRUE(run.model->Forward(*run.ctx, *cache, batch, &logits).ok());
    all = logits;
    int64_t pos = static_cast<int64_t>(prompt.size());
    for (int s = 0; s < kSteps; ++s) {
      const float* last = &all[all.size() - vocab];
      const int32_t next = follow ? (*follow)[s] : TopWithMargin(last, vocab).first;
      chosen->push_back(next);
      batch = {};
      run.routing.first_row = pos;
      batch.Add(seq, pos++, {next});
      EXPECT_TRUE(run.model->Forward(*run.ctx, *cache, batch, &logits).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }

  static constexpr int kSteps = 8;
  std::string dir_;
  DtypeRun f32_, bf16_;
  std::vector<std::vector<int32_t>> prompts_;
};

TEST_P(GoldenBf16Test, LogitsNearFloat32AndGreedyWhereTheMarginIsClear) {
  const int64_t vocab = f32_.model->config().vocab_size;
  int decided = 0, all_rows = 0;
  std::vector<std::string> exempt;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    std::vector<int32_t> f32_tokens, bf16_tokens;
    const std::vector<float> want = Logits(f32_, prompts_[i], nullptr, &f32_tokens);
    const std::vector<float> got = Logits(bf16_, prompts_[i], &f32_tokens, &bf16_tokens);
    ASSERT_EQ(want.size(), got.size());
    const int64_t rows = static_cast<int64_t>(want.size()) / vocab;
    for (int64_t r = 0; r < rows; ++r, ++all_rows) {
      const std::string where = absl::StrCat("prompt ", i, " row ", r);
      const float* w = &want[r * vocab];
      const float* g = &got[r * vocab];
      const double err = RowRelError(g, w, vocab);
      bool tie = false;
      EXPECT_TRUE(SameRoutingOrNearTie(f32_.routing.rows[r], bf16_.routing.rows[r], &tie))
          << where << ": bfloat16 routed this token to other experts without a near tie";
      if (tie) {
        exempt.push_back(absl::StrCat(where, " (error ", err, ")"));
      } else {
        EXPECT_LE(err, kBf16RowTolerance) << where;
      }
      // The greedy token may only differ where the float32 margin is within what the row's
      // error could move: err · |row| bounds any single logit's change.
      double norm = 0;
      for (int64_t j = 0; j < vocab; ++j) norm += double(w[j]) * w[j];
      const auto [top, margin] = TopWithMargin(w, vocab);
      if (margin > 2.0 * err * std::sqrt(norm)) {
        ++decided;
        EXPECT_EQ(TopWithMargin(g, vocab).first, top) << where;
      }
    }
  }
  EXPECT_GT(decided, 0) << "no row had a clear margin: the check compared nothing";
  EXPECT_LE(10 * exempt.size(), static_cast<size_t>(all_rows))
      << "too many rows with a routing near tie: " << absl::StrJoin(exempt, ", ");
  if (!exempt.empty()) {
    std::printf("rows after a routing near tie (not held to the row bar): %s\n",
                absl::StrJoin(exempt, ", ").c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenBf16Test, ::testing::Values("lite", "v2"));

}  // namespace
}  // namespace dsv2
