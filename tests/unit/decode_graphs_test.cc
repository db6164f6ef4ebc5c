// DecodeGraphs' padded bucket layout on the CPU (where it runs eagerly): decode steps of 1..5
// sequences padded to buckets 1, 2, 4, 8 give bit-identical logits, tokens and cache rows to the
// unpadded Forward; the padding tokens touch only the cache's scratch page. (The GPU build's
// decode_graphs_cuda_test compares captured graphs with this same eager layout, bit for bit.)
#include "coordinator/model/decode_graphs.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

int32_t Argmax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

class DecodeGraphsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = DeepseekV2Model::Load(TestDataDir() + "/golden/lite");
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  std::unique_ptr<DeepseekV2Model> model_;
  CpuContext cpu_{2};
};

TEST_F(DecodeGraphsTest, PaddedBucketsEqualPlainForwardBitForBit) {
  const int64_t vocab = model_->config().vocab_size;
  for (int n_seqs : {1, 3, 5}) {
    absl::StatusOr<LatentKvCache> plain = model_->MakeCache(64, 4);
    absl::StatusOr<LatentKvCache> padded = model_->MakeCache(64, 4);
    ASSERT_TRUE(plain.ok() && padded.ok());
    auto graphs = DecodeGraphs::Create(*model_, cpu_, {.max_context = 32, .max_batch = 8});
    ASSERT_TRUE(graphs.ok()) << graphs.status();
    // Prompts of different lengths, prefilled the same way in both caches.
    std::vector<int64_t> seqs;
    std::vector<int32_t> next;
    std::vector<int64_t> pos;
    ForwardBatch prefill;
    for (int s = 0; s < n_seqs; ++s) {
      const int64_t a = plain->AddSequence(), b = padded->AddSequence();
      ASSERT_EQ(a, b);
      seqs.push_back(a);
      std::vector<int32_t> prompt;
      for (int i = 0; i < 3 + 2 * s; ++i) prompt.push_back((17 * i + 5 * s + 1) % vocab);
      prefill.Add(a, 0, prompt);
      pos.push_back(static_cast<int64_t>(prompt.size()));
    }
    std::vector<float> la, lb;
    ASSERT_TRUE(model_->Forward(cpu_, *plain, prefill, &la).ok());
    ASSERT_TRUE(model_->Forward(cpu_, *padded, prefill, &lb).ok());
    for (int s = 0; s < n_seqs; ++s) next.push_back(Argmax(&la[s * vocab], vocab));
    for (int step = 0; step < 6; ++step) {
      ForwardBatch batch;
      for (int s = 0; s < n_seqs; ++s) batch.Add(seqs[s], pos[s]++, {next[s]});
      ASSERT_TRUE((*graphs)->Accepts(batch));
      ASSERT_TRUE(model_->Forward(cpu_, *plain, batch, &la).ok());  // 64 pages hold all
      ASSERT_TRUE((*graphs)->Forward(*padded, batch, &lb).ok());
      ASSERT_EQ(la.size(), lb.size());
      ASSERT_TRUE(std::equal(la.begin(), la.end(), lb.begin()))
          << n_seqs << " sequences, step " << step;
      for (int s = 0; s < n_seqs; ++s) next[s] = Argmax(&la[s * vocab], vocab);
    }
    // Every real cache row is the same in both caches (the padding wrote only the scratch page).
    const int64_t dim = model_->config().latent_cache_dim();
    for (int64_t l = 0; l < model_->config().num_hidden_layers; ++l) {
      for (int s = 0; s < n_seqs; ++s) {
        for (int64_t p = 0; p < pos[s]; ++p) {
          const float* a = plain->Row(l, seqs[s], p);
          const float* b = padded->Row(l, seqs[s], p);
          ASSERT_TRUE(std::equal(a, a + dim, b)) << "layer " << l << " seq " << s << " pos " << p;
        }
      }
    }
    EXPECT_EQ((*graphs)->graphs_captured(), 0);  // nothing is captured on the CPU
  }
}

TEST_F(DecodeGraphsTest, AcceptsOnlyDecodeStepsThatFit) {
  auto graphs = DecodeGraphs::Create(*model_, cpu_, {.max_context = 32, .max_batch = 4});
  ASSERT_TRUE(graphs.ok());
  ForwardBatch prompt, wants_all, too_far, ok;
  prompt.Add(0, 0, {1, 2});
  wants_all.Add(0, 3, {1}, /*all_logits=*/true);
  too_far.Add(0, 32, {1});
  ok.Add(0, 31, {1});
  EXPECT_FALSE((*graphs)->Accepts(prompt));
  EXPECT_FALSE((*graphs)->Accepts(wants_all));
  EXPECT_FALSE((*graphs)->Accepts(too_far));
  EXPECT_TRUE((*graphs)->Accepts(ok));
  ForwardBatch five;
  for (int s = 0; s < 5; ++s) five.Add(s, 0, {1});
  EXPECT_FALSE((*graphs)->Accepts(five));  // more than max_batch
}

}  // namespace
}  // namespace dsv2
