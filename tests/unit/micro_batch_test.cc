// Two-batch overlap (DeepseekV2Model::SetExpertBackend with 2 micro-batches) on the CPU, with an
// in-process backend that computes the routed experts from the full model and records the
// schedule: a step of several sequences becomes two exchanges per MoE layer, in layer order,
// and during each exchange the other micro-batch's attention runs (so the other one advances
// while the tokens are away); the logits equal the one-pass forward's.
#include <memory>
#include <string>
#include <vector>

#include "common/expert_shard.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "gtest/gtest.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

class RecordingBackend final : public RoutedExpertBackend {
 public:
  explicit RecordingBackend(const DeepseekV2Model& full) : full_(full) {}

  struct Call {
    int64_t layer;
    int64_t n_tokens;
    bool ran_while_away;
  };

  absl::Status Run(const CpuContext& ctx, int64_t layer, const RouterSelection& sel, const float* x,
                   int64_t hidden, float* out, const std::function<void()>& while_away) override {
    const MoeWeights& moe = full_.weights().layers[layer].moe;
    RoutedExpertsForward(ctx, moe.experts, moe.expert_begin,
                         {.n_tokens = sel.n_tokens,
                          .top_k = sel.top_k,
                          .expert = sel.expert.data(),
                          .weight = sel.weight.data()},
                         x, hidden, out);
    if (while_away) while_away();
    calls.push_back({layer, sel.n_tokens, static_cast<bool>(while_away)});
    return absl::OkStatus();
  }

  std::vector<Call> calls;

 private:
  const DeepseekV2Model& full_;
};

TEST(MicroBatchTest, TwoMicroBatchesInterleaveAndMatchOnePass) {
  const std::string dir = TestDataDir() + "/golden/lite";
  auto full = DeepseekV2Model::Load(dir);
  ASSERT_TRUE(full.ok()) << full.status();
  // The coordinator's model binds no routed experts; the backend owns them.
  auto coordinator = DeepseekV2Model::Load(dir, {.expert_begin = 0, .expert_end = 0});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  const CpuContext cpu(1);
  const ExecContext ctx(cpu);

  // Three sequences of 5, 2 and 4 tokens: split after the first (5 of 11 tokens is < half,
  // 7 is >= half: chunks [0, 2) and [2, 3)).
  auto run = [&](DeepseekV2Model& model, std::vector<float>* logits) {
    LatentKvCache cache = model.MakeCache(16, 16).value();
    ForwardBatch batch;
    const std::vector<std::vector<int32_t>> prompts = {{5, 9, 2, 7, 1}, {3, 3}, {8, 6, 4, 11}};
    for (const auto& p : prompts) batch.Add(cache.AddSequence(), 0, p);
    ASSERT_TRUE(model.Forward(ctx, cache, batch, logits).ok());
  };
  std::vector<float> want, got;
  run(**full, &want);
  RecordingBackend backend(**full);
  (*coordinator)->SetExpertBackend(&backend, /*micro_batches=*/2);
  run(**coordinator, &got);

  const ModelConfig& c = (*full)->config();
  std::vector<int64_t> moe_layers;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (c.IsMoeLayer(l)) moe_layers.push_back(l);
  }
  ASSERT_EQ(backend.calls.size(), 2 * moe_layers.size());
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    const auto& first = backend.calls[2 * i];
    const auto& second = backend.calls[2 * i + 1];
    EXPECT_EQ(first.layer, moe_layers[i]);
    EXPECT_EQ(second.layer, moe_layers[i]);
    EXPECT_EQ(first.n_tokens, 7);        // sequences 0 and 1
    EXPECT_EQ(second.n_tokens, 4);       // sequence 2
    EXPECT_TRUE(first.ran_while_away);   // the second micro-batch's attention of this layer
    EXPECT_TRUE(second.ran_while_away);  // the first's of the next (or nothing after the last)
  }
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(got.size(), 3 * static_cast<size_t>(c.vocab_size));  // one row per sequence
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << "logit " << i;

  // One micro-batch: one exchange per MoE layer, the same logits.
  backend.calls.clear();
  (*coordinator)->SetExpertBackend(&backend, /*micro_batches=*/1);
  run(**coordinator, &got);
  EXPECT_EQ(backend.calls.size(), moe_layers.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << "logit " << i;
}

}  // namespace
}  // namespace dsv2
