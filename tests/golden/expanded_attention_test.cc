// Prefill chunks in the expanded form (coordinator/model/mla_expanded_attention.h) against the
// absorbed form on the trained demo model: in float32, a 256-token held-out window as one
// chunk, as two chunks (the second expanded over a cached prefix), and beside another
// sequence's decode token in one step, each row of logits within 1e-5 (relative) of the window
// fed in chunks of 16 tokens, which always stay absorbed: both forms compute the same sums in
// another order (the golden and demo tests hold either to transformers). In bf16 the two forms
// round at different points, and a rounding can tip a near-tied router choice (a row then
// differs by a whole expert): there the expanded form's mean row error against float32 may not
// exceed the absorbed form's by more than a quarter.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/model/mla_expanded_attention.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

class ExpandedAttentionTest : public ::testing::Test {
 protected:
  void SetUp() override { Load(DType::kF32); }

  void Load(DType dtype) {
    auto model =
        DeepseekV2Model::Load(TestDemoModelDir(), {}, {.device = Device::kCpu, .dtype = dtype});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    auto ref = SafetensorsFile::Open(TestDataDir() + "/demo/reference.safetensors");
    ASSERT_TRUE(ref.ok());
    const TensorInfo& ids = (*ref)->tensors().at("heldout_ids");
    const std::vector<int32_t> all = Ints(ids);
    window_.assign(all.begin(), all.begin() + ids.shape[1]);
    vocab_ = model_->config().vocab_size;
  }

  // Logits of every position of the window fed as chunks of `chunk` tokens.
  std::vector<float> InChunks(const ExecContext& ctx, int64_t chunk) {
    LatentKvCache cache = *model_->MakeCache(8, 64);
    const int64_t seq = cache.AddSequence();
    std::vector<float> all, logits;
    for (int64_t i = 0; i < static_cast<int64_t>(window_.size()); i += chunk) {
      const int64_t end = std::min<int64_t>(i + chunk, window_.size());
      ForwardBatch batch;
      batch.Add(seq, i, std::vector<int32_t>(window_.begin() + i, window_.begin() + end), true);
      EXPECT_TRUE(model_->Forward(ctx, cache, batch, &logits).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }

  void ExpectNear(const std::vector<float>& ours, const std::vector<float>& ref,
                  const std::string& what) {
    ASSERT_EQ(ours.size(), ref.size()) << what;
    const double tol = 1e-5;
    for (size_t row = 0; row * vocab_ < ref.size(); ++row) {
      ASSERT_LT(RowRelError(&ours[row * vocab_], &ref[row * vocab_], vocab_), tol)
          << what << ", position " << row;
    }
  }

  std::unique_ptr<DeepseekV2Model> model_;
  std::vector<int32_t> window_;
  int64_t vocab_ = 0;
};

TEST_F(ExpandedAttentionTest, LongChunksMatchTheAbsorbedFormInFloat32) {
  CpuContext cpu(2, DetectCpuIsa(), DType::kF32);
  ExecContext ctx(cpu);
  // The chunks this test calls expanded are: a chunk of 16 is not.
  TokenLayout probe;
  probe.n_tokens = 256;
  for (int32_t i = 0; i < 256; ++i) {
    probe.positions.push_back(i < 16 ? i : 128 + i - 16);
    probe.token_table.push_back(i < 16 ? 0 : 1);
  }
  const std::vector<ExpandedSegment> segments = ExpandedSegments(model_->config(), probe);
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].first_token, 16);
  EXPECT_EQ(segments[0].n_tokens, 240);

  const std::vector<float> absorbed = InChunks(ctx, 16);
  ExpectNear(InChunks(ctx, 256), absorbed, "one chunk of 256");
  ExpectNear(InChunks(ctx, 128), absorbed, "two chunks of 128");

  // The window beside another sequence's decode token, in one step.
  LatentKvCache cache = *model_->MakeCache(10, 64);
  const int64_t other = cache.AddSequence(), seq = cache.AddSequence();
  std::vector<float> logits;
  ForwardBatch prompt;
  prompt.Add(other, 0, std::vector<int32_t>(window_.begin(), window_.begin() + 40));
  ASSERT_TRUE(model_->Forward(ctx, cache, prompt, &logits).ok());
  ForwardBatch mixed;
  mixed.Add(other, 40, {window_[40]}, true);
  mixed.Add(seq, 0, window_, true);
  ASSERT_TRUE(model_->Forward(ctx, cache, mixed, &logits).ok());
  ExpectNear(std::vector<float>(logits.begin() + vocab_, logits.end()), absorbed,
             "beside a decode token");
  ExpectNear(std::vector<float>(logits.begin(), logits.begin() + vocab_),
             std::vector<float>(absorbed.begin() + 40 * vocab_, absorbed.begin() + 41 * vocab_),
             "the decode token");
}

TEST_F(ExpandedAttentionTest, InBf16NoLessAccurateThanTheAbsorbedForm) {
  CpuContext f32(2, DetectCpuIsa(), DType::kF32);
  const std::vector<float> reference = InChunks(ExecContext(f32), 16);
  Load(DType::kBF16);
  CpuContext bf16(2, DetectCpuIsa(), DType::kBF16);
  auto mean_error = [&](const std::vector<float>& logits) {
    double sum = 0;
    const size_t rows = reference.size() / vocab_;
    for (size_t row = 0; row < rows; ++row) {
      sum += RowRelError(&logits[row * vocab_], &reference[row * vocab_], vocab_);
    }
    return sum / static_cast<double>(rows);
  };
  const double absorbed = mean_error(InChunks(ExecContext(bf16), 16));
  const double expanded = mean_error(InChunks(ExecContext(bf16), 256));
  std::printf("bf16 against float32, mean row error: absorbed %.5f, expanded %.5f\n", absorbed,
              expanded);
  EXPECT_LE(expanded, 1.25 * absorbed);
}

}  // namespace
}  // namespace dsv2
