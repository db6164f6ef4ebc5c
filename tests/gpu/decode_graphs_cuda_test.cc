// CUDA-graph replay of decode steps equals the same padded steps run eagerly, bit for bit, in
// float32 and bfloat16, for batches that fill and that pad their buckets; and the graphed steps
// stay within the float32 golden bar of the plain (unpadded, eager) Forward. Skipped without a
// CUDA device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/model/decode_graphs.h"
#include "gtest/gtest.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

int32_t Argmax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

class DecodeGraphsCudaTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const absl::StatusOr<CudaDeviceInfo> gpu = ProbeCudaDevice(0);
    if (!gpu.ok()) GTEST_SKIP() << gpu.status().message();
    auto model = DeepseekV2Model::Load(TestDataDir() + "/golden/lite", {},
                                       {.device = Device::kCuda, .dtype = GetParam()});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    ctx_ = std::make_unique<ExecContext>(*model_->cuda_context());
  }
  std::unique_ptr<DeepseekV2Model> model_;
  std::unique_ptr<ExecContext> ctx_;
  CpuContext cpu_{1};
};

TEST_P(DecodeGraphsCudaTest, ReplayEqualsEagerPaddedBitForBit) {
  const int64_t vocab = model_->config().vocab_size;
  for (int n_seqs : {1, 3, 8, 17}) {
    // Three caches advanced in lockstep: graphs, the same padded layout eagerly, plain Forward.
    std::vector<LatentKvCache> caches;
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<LatentKvCache> c = model_->MakeCache(128, 16);
      ASSERT_TRUE(c.ok()) << c.status();
      caches.push_back(*std::move(c));
    }
    auto graphed = DecodeGraphs::Create(*model_, cpu_, {.max_context = 64, .max_batch = 32});
    auto eager =
        DecodeGraphs::Create(*model_, cpu_, {.max_context = 64, .max_batch = 32, .capture = false});
    ASSERT_TRUE(graphed.ok() && eager.ok());
    std::vector<int64_t> seqs, pos;
    std::vector<int32_t> next;
    ForwardBatch prefill;
    for (int s = 0; s < n_seqs; ++s) {
      const int64_t id = caches[0].AddSequence();
      for (int i = 1; i < 3; ++i) ASSERT_EQ(caches[i].AddSequence(), id);
      seqs.push_back(id);
      std::vector<int32_t> prompt;
      for (int i = 0; i < 2 + s % 5; ++i) prompt.push_back((29 * i + 7 * s + 3) % vocab);
      prefill.Add(seqs[s], 0, prompt);
      pos.push_back(static_cast<int64_t>(prompt.size()));
    }
    std::vector<float> l[3];
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(model_->Forward(*ctx_, caches[i], prefill, &l[i]).ok());
    for (int s = 0; s < n_seqs; ++s) next.push_back(Argmax(&l[0][s * vocab], vocab));
    for (int step = 0; step < 5; ++step) {
      ForwardBatch batch;
      for (int s = 0; s < n_seqs; ++s) batch.Add(seqs[s], pos[s]++, {next[s]});
      ASSERT_TRUE((*graphed)->Forward(caches[0], batch, &l[0]).ok());
      ASSERT_TRUE((*eager)->Forward(caches[1], batch, &l[1]).ok());
      ASSERT_TRUE(model_->Forward(*ctx_, caches[2], batch, &l[2]).ok());
      ASSERT_TRUE(std::equal(l[0].begin(), l[0].end(), l[1].begin()))
          << n_seqs << " sequences, step " << step << ": replay differs from eager";
      for (int s = 0; s < n_seqs; ++s) {
        // The plain Forward splits attention differently (its own max position): equal up to
        // summation order.
        double diff = 0, norm = 0;
        for (int64_t j = 0; j < vocab; ++j) {
          const double d = double(l[0][s * vocab + j]) - l[2][s * vocab + j];
          diff += d * d;
          norm += double(l[2][s * vocab + j]) * l[2][s * vocab + j];
        }
        EXPECT_LE(std::sqrt(diff / norm), GetParam() == DType::kF32 ? 1e-5 : 2e-2)
            << n_seqs << " sequences, step " << step << ", sequence " << s;
        next[s] = Argmax(&l[0][s * vocab], vocab);
      }
    }
    EXPECT_GE((*graphed)->graphs_captured(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DecodeGraphsCudaTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& p) {
                           return p.param == DType::kF32 ? std::string("F32") : std::string("BF16");
                         });

}  // namespace
}  // namespace dsv2
