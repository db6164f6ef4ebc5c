// The built-in demo model (assets/demo-model, a DeepSeek-V2 trained on Shakespeare) against
// transformers on the same tokens (tests/data/demo/reference.safetensors, written by
// tools/train_demo_model.py): held-out perplexity within 0.5%, greedy continuations identical
// token for token, and the prompts tokenized as Hugging Face tokenizes them. A trained router
// makes sharp, skewed choices that random weights never exercise.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

class DemoModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto model = DeepseekV2Model::Load(TestDemoModelDir(), {}, {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
    auto ref = SafetensorsFile::Open(TestDataDir() + "/demo/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = ref->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete ref_;
  }
  void SetUp() override {
    ASSERT_NE(model_, nullptr);
    ASSERT_NE(ref_, nullptr);
    ctx_ = std::make_unique<ExecContext>(cpu_);
  }
  const TensorInfo& Ref(const std::string& name) { return ref_->tensors().at(name); }
  int NumPrompts() { return std::stoi(ref_->metadata().at("num_prompts")); }

  static DeepseekV2Model* model_;
  static SafetensorsFile* ref_;
  CpuContext cpu_{2};
  std::unique_ptr<ExecContext> ctx_;
};

DeepseekV2Model* DemoModelTest::model_ = nullptr;
SafetensorsFile* DemoModelTest::ref_ = nullptr;

TEST_F(DemoModelTest, HeldOutPerplexityMatchesTransformers) {
  const TensorInfo& ids_t = Ref("heldout_ids");  // [windows, len]: BOS + held-out text
  const TensorInfo& nll_t = Ref("heldout_nll");  // [windows] mean NLL per window (transformers)
  const std::vector<int32_t> all_ids = Ints(ids_t);
  const int64_t windows = ids_t.shape[0], len = ids_t.shape[1];
  const double* ref_nll = static_cast<const double*>(nll_t.data);
  double ours_sum = 0, ref_sum = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const std::vector<int32_t> ids(all_ids.begin() + w * len, all_ids.begin() + (w + 1) * len);
    const double nll = WindowNll(*model_, *ctx_, ids);
    ASSERT_FALSE(std::isnan(nll)) << "window " << w;
    EXPECT_NEAR(nll, ref_nll[w], 0.005 * ref_nll[w]) << "window " << w;
    ours_sum += nll;
    ref_sum += ref_nll[w];
  }
  const double ours_ppl = std::exp(ours_sum / windows), ref_ppl = std::exp(ref_sum / windows);
  std::printf("held-out perplexity over %lld x %lld tokens: ours %.4f, transformers %.4f\n",
              static_cast<long long>(windows), static_cast<long long>(len - 1), ours_ppl, ref_ppl);
  EXPECT_NEAR(ours_ppl / ref_ppl, 1.0, 0.005);
}

TEST_F(DemoModelTest, GreedyContinuationsMatchTransformers) {
  const int64_t vocab = model_->config().vocab_size;
  for (int i = 0; i < NumPrompts(); ++i) {
    const std::vector<int32_t> prompt = Ints(Ref(absl::StrCat("prompt_", i, "_ids")));
    const std::vector<int32_t> want = Ints(Ref(absl::StrCat("prompt_", i, "_greedy")));
    LatentKvCache cache = *model_->MakeCache(4, 16);
    const int64_t seq = cache.AddSequence();
    ForwardBatch prefill;
    prefill.Add(seq, 0, prompt);
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(*ctx_, cache, prefill, &logits).ok());
    std::vector<int32_t> got;
    for (size_t s = 0; s < want.size(); ++s) {
      const float* row = &logits[(logits.size() / vocab - 1) * vocab];
      got.push_back(static_cast<int32_t>(std::max_element(row, row + vocab) - row));
      ForwardBatch step;
      step.Add(seq, static_cast<int64_t>(prompt.size() + s), {got.back()});
      ASSERT_TRUE(model_->Forward(*ctx_, cache, step, &logits).ok());
    }
    EXPECT_EQ(got, want) << "prompt " << i << ": "
                         << ref_->metadata().at(absl::StrCat("prompt_", i, "_text"));
  }
}

TEST_F(DemoModelTest, PromptsTokenizeAsHuggingFace) {
  auto tok = Tokenizer::Load(TestDemoModelDir());
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (int i = 0; i < NumPrompts(); ++i) {
    const std::string text = ref_->metadata().at(absl::StrCat("prompt_", i, "_text"));
    absl::StatusOr<std::vector<int32_t>> ids = (*tok)->Encode(text, /*add_special=*/true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, Ints(Ref(absl::StrCat("prompt_", i, "_ids")))) << text;
  }
}

}  // namespace
}  // namespace dsv2
