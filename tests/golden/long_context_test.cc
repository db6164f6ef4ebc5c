// Past YaRN's original positions against transformers (issue 31, part 5): the golden lite
// checkpoint (yarn factor 40 over 4,096 original positions) on a 4,500-token prompt
// (tools/make_long_context_fixture.py: transformers' logits at every 64th and the last 64
// positions, and 8 greedy tokens), float32 within 1e-4 relative per row as golden_test holds:
// the prompt as one chunk (the expanded prefill form), in chunks of 1,000 (expanded over a
// cached prefix) and in chunks of 16 (the absorbed form), each followed by the greedy decode
// (absorbed, reading all 4,500 cached rows).
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

constexpr double kRowTolerance = 1e-4;

class LongContextTest : public ::testing::TestWithParam<int64_t> {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = TestDataDir() + "/golden/lite";
    auto model = DeepseekV2Model::Load(dir, {}, {.device = Device::kCpu, .dtype = DType::kF32});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
    auto ref = SafetensorsFile::Open(dir + "/long_context.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = ref->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete ref_;
  }
  static const TensorInfo& Ref(const std::string& name) { return ref_->tensors().at(name); }

  static DeepseekV2Model* model_;
  static SafetensorsFile* ref_;
};

DeepseekV2Model* LongContextTest::model_ = nullptr;
SafetensorsFile* LongContextTest::ref_ = nullptr;

TEST_P(LongContextTest, PromptInChunksThenGreedyMatchTransformers) {
  const int64_t chunk = GetParam(), vocab = model_->config().vocab_size;
  const std::vector<int32_t> ids = Ints(Ref("ids"));
  const std::vector<int32_t> rows = Ints(Ref("rows"));
  const std::vector<int32_t> greedy = Ints(Ref("greedy_ids"));
  const auto* ref_logits = static_cast<const float*>(Ref("logits").data);
  const auto* greedy_logits = static_cast<const float*>(Ref("greedy_logits").data);
  const int64_t len = static_cast<int64_t>(ids.size());
  ASSERT_GT(len, 4096);

  CpuContext cpu(2, DetectCpuIsa(), DType::kF32);
  ExecContext ctx(cpu);
  LatentKvCache cache = *model_->MakeCache((len + 16 + 63) / 64, 64);
  const int64_t seq = cache.AddSequence();
  std::vector<float> all(len * vocab), logits;
  for (int64_t i = 0; i < len; i += chunk) {
    const int64_t end = std::min(len, i + chunk);
    ForwardBatch batch;
    batch.Add(seq, i, std::vector<int32_t>(ids.begin() + i, ids.begin() + end), true);
    ASSERT_TRUE(model_->Forward(ctx, cache, batch, &logits).ok());
    std::copy(logits.begin(), logits.end(), all.begin() + i * vocab);
  }
  for (size_t k = 0; k < rows.size(); ++k) {
    EXPECT_LE(RowRelError(&all[rows[k] * vocab], ref_logits + k * vocab, vocab), kRowTolerance)
        << "position " << rows[k];
  }
  int32_t next = Argmax(&all[(len - 1) * vocab], vocab);
  for (size_t s = 0; s < greedy.size(); ++s) {
    ASSERT_EQ(next, greedy[s]) << "greedy step " << s;
    if (s + 1 == greedy.size()) break;
    ForwardBatch step;
    step.Add(seq, len + static_cast<int64_t>(s), {next});
    ASSERT_TRUE(model_->Forward(ctx, cache, step, &logits).ok());
    EXPECT_LE(RowRelError(logits.data(), greedy_logits + (s + 1) * vocab, vocab), kRowTolerance)
        << "greedy step " << s + 1;
    next = Argmax(logits.data(), vocab);
  }
}

INSTANTIATE_TEST_SUITE_P(Chunks, LongContextTest, ::testing::Values(4500, 1000, 16),
                         [](const auto& info) { return absl::StrCat("of", info.param); });

}  // namespace
}  // namespace dsv2
