// The whole model against the Hugging Face reference (tests/data/golden/*, written by
// tools/make_golden_fixtures.py): logits at every prompt position within 1e-4 relative per
// row, and the greedy continuation identical token for token — for the whole prompt at once,
// token by token through the latent cache, chunked, and several sequences batched together.
// Built twice: golden_test on the CPU, and tests/gpu's golden_cuda_test (DSV2_GOLDEN_ON_CUDA)
// with the model on the GPU in float32 at the same bar, skipped without a CUDA device.
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

constexpr double kRowTolerance = 1e-4;
#ifdef DSV2_GOLDEN_ON_CUDA
constexpr ModelPlacement kPlacement{.device = Device::kCuda, .dtype = DType::kF32};
#else
constexpr ModelPlacement kPlacement{.device = Device::kCpu, .dtype = DType::kF32};
#endif

struct PromptCase {
  std::vector<int32_t> ids;
  std::vector<float> logits;  // [len, vocab]
  std::vector<int32_t> greedy_ids;
  std::vector<float> greedy_logits;  // [steps, vocab]
};

std::vector<float> Floats(const TensorInfo& t) {
  const float* p = static_cast<const float*>(t.data);
  return std::vector<float>(p, p + t.numel());
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = absl::StrCat(TestDataDir(), "/golden/", GetParam());
    if (kPlacement.device == Device::kCuda) {
      const absl::StatusOr<CudaDeviceInfo> gpu = ProbeCudaDevice(0);
      if (!gpu.ok()) GTEST_SKIP() << gpu.status().message();
    }
    auto model = DeepseekV2Model::Load(dir, {}, kPlacement);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    vocab_ = model_->config().vocab_size;
    auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    const int n = std::stoi(ref.value()->metadata().at("num_prompts"));
    for (int i = 0; i < n; ++i) {
      auto get = [&](const char* what) -> const TensorInfo& {
        return ref.value()->tensors().at(absl::StrCat("prompt.", i, ".", what));
      };
      prompts_.push_back({Ints(get("ids")), Floats(get("logits")), Ints(get("greedy_ids")),
                          Floats(get("greedy_logits"))});
    }
    cpu_ = std::make_unique<CpuContext>(2);
    ctx_ = model_->cuda_context() != nullptr
               ? std::make_unique<ExecContext>(*model_->cuda_context())
               : std::make_unique<ExecContext>(*cpu_);
  }

  void ExpectRows(const float* ours, const float* ref, int64_t rows, const std::string& what) {
    for (int64_t r = 0; r < rows; ++r) {
      const double err = RowRelError(ours + r * vocab_, ref + r * vocab_, vocab_);
      EXPECT_LE(err, kRowTolerance) << what << " row " << r;
    }
  }

  // Greedy decode of `steps` tokens for every sequence at once, one token each per forward;
  // checks each step's logits and token against the reference.
  // seqs[i] holds prompt prompt_index[i], already prefilled; next[i] its first greedy token.
  void DecodeAndCheck(LatentKvCache& cache, const std::vector<int64_t>& seqs,
                      const std::vector<size_t>& prompt_index, std::vector<int32_t> next,
                      const std::string& what) {
    std::vector<int64_t> pos;
    std::vector<const PromptCase*> ps;
    for (size_t i = 0; i < seqs.size(); ++i) {
      ps.push_back(&prompts_[prompt_index[i]]);
      pos.push_back(ps[i]->ids.size());
      ASSERT_EQ(next[i], ps[i]->greedy_ids[0]) << what << " seq " << i << " step 0";
    }
    const size_t steps = prompts_[0].greedy_ids.size();
    std::vector<float> logits;
    for (size_t s = 1; s < steps; ++s) {
      ForwardBatch batch;
      for (size_t i = 0; i < seqs.size(); ++i) batch.Add(seqs[i], pos[i]++, {next[i]});
      ASSERT_TRUE(model_->Forward(*ctx_, cache, batch, &logits).ok());
      for (size_t i = 0; i < seqs.size(); ++i) {
        ExpectRows(&logits[i * vocab_], &ps[i]->greedy_logits[s * vocab_], 1,
                   absl::StrCat(what, " seq ", i, " step ", s));
        next[i] = Argmax(&logits[i * vocab_], vocab_);
        ASSERT_EQ(next[i], ps[i]->greedy_ids[s]) << what << " seq " << i << " step " << s;
      }
    }
  }

  std::unique_ptr<DeepseekV2Model> model_;
  std::unique_ptr<CpuContext> cpu_;
  std::unique_ptr<ExecContext> ctx_;
  std::vector<PromptCase> prompts_;
  int64_t vocab_ = 0;
};

TEST_P(GoldenTest, WholePromptThenGreedy) {
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const PromptCase& p = prompts_[i];
    LatentKvCache cache = *model_->MakeCache(8, 16);
    const int64_t seq = cache.AddSequence();
    ForwardBatch batch;
    batch.Add(seq, 0, p.ids, /*all_logits=*/true);
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(*ctx_, cache, batch, &logits).ok());
    ExpectRows(logits.data(), p.logits.data(), p.ids.size(), absl::StrCat("prompt ", i));
    // Greedy continuation from the prompt's last row, through the cache.
    DecodeAndCheck(cache, {seq}, {i}, {Argmax(&logits[(p.ids.size() - 1) * vocab_], vocab_)},
                   absl::StrCat("prompt ", i));
  }
}

TEST_P(GoldenTest, TokenByTokenThroughCache) {
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const PromptCase& p = prompts_[i];
    LatentKvCache cache = *model_->MakeCache(8, 4);  // small pages: rows cross page boundaries
    const int64_t seq = cache.AddSequence();
    std::vector<float> logits;
    for (size_t t = 0; t < p.ids.size(); ++t) {
      ForwardBatch batch;
      batch.Add(seq, t, {p.ids[t]});
      ASSERT_TRUE(model_->Forward(*ctx_, cache, batch, &logits).ok());
      ExpectRows(logits.data(), &p.logits[t * vocab_], 1, absl::StrCat("prompt ", i, " pos ", t));
    }
  }
}

TEST_P(GoldenTest, ChunkedPrefill) {
  const PromptCase& p = prompts_[1];
  ASSERT_GE(p.ids.size(), 4u);
  LatentKvCache cache = *model_->MakeCache(8, 16);
  const int64_t seq = cache.AddSequence();
  const size_t split = p.ids.size() / 2;
  std::vector<float> first, second;
  ForwardBatch a, b;
  a.Add(seq, 0, std::vector<int32_t>(p.ids.begin(), p.ids.begin() + split), true);
  b.Add(seq, split, std::vector<int32_t>(p.ids.begin() + split, p.ids.end()), true);
  ASSERT_TRUE(model_->Forward(*ctx_, cache, a, &first).ok());
  ASSERT_TRUE(model_->Forward(*ctx_, cache, b, &second).ok());
  ExpectRows(first.data(), p.logits.data(), split, "first chunk");
  ExpectRows(second.data(), &p.logits[split * vocab_], p.ids.size() - split, "second chunk");
}

TEST_P(GoldenTest, SequencesBatchedTogether) {
  LatentKvCache cache = *model_->MakeCache(16, 8);
  std::vector<int64_t> seqs;
  ForwardBatch batch;
  for (const PromptCase& p : prompts_) {
    seqs.push_back(cache.AddSequence());
    batch.Add(seqs.back(), 0, p.ids, /*all_logits=*/true);
  }
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(*ctx_, cache, batch, &logits).ok());
  std::vector<int32_t> next;
  int64_t row = 0;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const int64_t len = prompts_[i].ids.size();
    ExpectRows(&logits[row * vocab_], prompts_[i].logits.data(), len, absl::StrCat("prompt ", i));
    next.push_back(Argmax(&logits[(row + len - 1) * vocab_], vocab_));
    row += len;
  }
  std::vector<size_t> index(prompts_.size());
  for (size_t i = 0; i < index.size(); ++i) index[i] = i;
  DecodeAndCheck(cache, seqs, index, next, "batched");
}

TEST_P(GoldenTest, BadBatchIsRejectedAndCacheUntouched) {
  LatentKvCache cache = *model_->MakeCache(2, 4);
  const int64_t seq = cache.AddSequence();
  std::vector<float> logits;
  ForwardBatch bad_token;
  bad_token.Add(seq, 0, {1, static_cast<int32_t>(vocab_)});
  absl::Status s = model_->Forward(*ctx_, cache, bad_token, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token id"), std::string::npos) << s;
  ForwardBatch too_long;
  too_long.Add(seq, 0, std::vector<int32_t>(9, 3));  // 2 pages of 4 rows hold 8
  s = model_->Forward(*ctx_, cache, too_long, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(cache.free_pages(), 2);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest, ::testing::Values("lite", "v2"));

}  // namespace
}  // namespace dsv2
