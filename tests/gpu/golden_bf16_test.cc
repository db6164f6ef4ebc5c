// The golden fixtures on the GPU in bfloat16 against the same model on the GPU in float32
// (itself held to the reference by golden_cuda_test): every logit row within 2e-2 relative, and
// the greedy token identical wherever the reference's top-1/top-2 margin exceeds what that
// error can move. Skipped without a CUDA device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

constexpr double kBf16RowTolerance = 2e-2;

struct GpuRun {
  std::unique_ptr<DeepseekV2Model> model;
  std::unique_ptr<ExecContext> ctx;
};

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
    const absl::StatusOr<CudaDeviceInfo> gpu = ProbeCudaDevice(0);
    if (!gpu.ok()) GTEST_SKIP() << gpu.status().message();
    dir_ = absl::StrCat(TestDataDir(), "/golden/", GetParam());
    for (DType dt : {DType::kF32, DType::kBF16}) {
      auto model = DeepseekV2Model::Load(dir_, {}, {.device = Device::kCuda, .dtype = dt});
      ASSERT_TRUE(model.ok()) << model.status();
      GpuRun run;
      run.model = std::move(*model);
      run.ctx = std::make_unique<ExecContext>(*run.model->cuda_context());
      (dt == DType::kF32 ? f32_ : bf16_) = std::move(run);
    }
    auto ref = SafetensorsFile::Open(dir_ + "/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    const int n = std::stoi(ref.value()->metadata().at("num_prompts"));
    for (int i = 0; i < n; ++i) {
      prompts_.push_back(Ints(ref.value()->tensors().at(absl::StrCat("prompt.", i, ".ids"))));
    }
  }

  // Prompt logits [len, vocab] of `run`, then `steps` greedy tokens through its cache
  // (following `follow` when given, so that both runs see the same tokens).
  std::vector<float> Logits(GpuRun& run, const std::vector<int32_t>& prompt,
                            const std::vector<int32_t>* follow, std::vector<int32_t>* chosen) {
    const int64_t vocab = run.model->config().vocab_size;
    absl::StatusOr<LatentKvCache> cache = run.model->MakeCache(16, 16);
    EXPECT_TRUE(cache.ok()) << cache.status();
    const int64_t seq = cache->AddSequence();
    ForwardBatch batch;
    batch.Add(seq, 0, prompt, /*all_logits=*/true);
    std::vector<float> all, logits;
    EXPECT_TRUE(run.model->Forward(*run.ctx, *cache, batch, &logits).ok());
    all = logits;
    int64_t pos = static_cast<int64_t>(prompt.size());
    for (int s = 0; s < kSteps; ++s) {
      const float* last = &all[all.size() - vocab];
      const int32_t next = follow ? (*follow)[s] : TopWithMargin(last, vocab).first;
      chosen->push_back(next);
      batch = {};
      batch.Add(seq, pos++, {next});
      EXPECT_TRUE(run.model->Forward(*run.ctx, *cache, batch, &logits).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }

  static constexpr int kSteps = 8;
  std::string dir_;
  GpuRun f32_, bf16_;
  std::vector<std::vector<int32_t>> prompts_;
};

TEST_P(GoldenBf16Test, LogitsNearFloat32AndGreedyWhereTheMarginIsClear) {
  const int64_t vocab = f32_.model->config().vocab_size;
  int decided = 0;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    std::vector<int32_t> f32_tokens, bf16_tokens;
    const std::vector<float> want = Logits(f32_, prompts_[i], nullptr, &f32_tokens);
    const std::vector<float> got = Logits(bf16_, prompts_[i], &f32_tokens, &bf16_tokens);
    ASSERT_EQ(want.size(), got.size());
    const int64_t rows = static_cast<int64_t>(want.size()) / vocab;
    for (int64_t r = 0; r < rows; ++r) {
      const float* w = &want[r * vocab];
      const float* g = &got[r * vocab];
      const double err = RowRelError(g, w, vocab);
      EXPECT_LE(err, kBf16RowTolerance) << "prompt " << i << " row " << r;
      // The greedy token may only differ where the float32 margin is within what the row's
      // error could move: err · |row| bounds any single logit's change.
      double norm = 0;
      for (int64_t j = 0; j < vocab; ++j) norm += double(w[j]) * w[j];
      const auto [top, margin] = TopWithMargin(w, vocab);
      if (margin > 2.0 * err * std::sqrt(norm)) {
        ++decided;
        EXPECT_EQ(TopWithMargin(g, vocab).first, top) << "prompt " << i << " row " << r;
      }
    }
  }
  EXPECT_GT(decided, 0) << "no row had a clear margin: the check compared nothing";
}

INSTANTIATE_TEST_SUITE_P(GoldenOnGpu, GoldenBf16Test, ::testing::Values("lite", "v2"));

}  // namespace
}  // namespace dsv2
