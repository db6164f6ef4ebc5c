// ModelConfig parsing (REFERENCE.md §1) and the derived attention scale and rope frequencies.
#include <cmath>
#include <string>

#include "absl/strings/str_replace.h"
#include "common/json_document.h"
#include "common/model_config.h"
#include "common/synthetic_checkpoint.h"
#include "coordinator/model/rope_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;

// config.json of DeepSeek-V2-Lite as published, plus a field we do not know.
constexpr const char* kLiteJson = R"({
  "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
  "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
  "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
  "vocab_size": 102400, "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64, "v_head_dim": 128, "attention_bias": false,
  "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
  "first_k_dense_replace": 1, "moe_layer_freq": 1, "topk_method": "greedy", "n_group": 1,
  "topk_group": 1, "norm_topk_prob": false, "routed_scaling_factor": 1.0,
  "scoring_func": "softmax", "aux_loss_alpha": 0.001, "seq_aux": true,
  "rms_norm_eps": 1e-06, "rope_theta": 10000, "max_position_embeddings": 163840,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                   "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
  "bos_token_id": 100000, "eos_token_id": 100001, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "ep_size": 1, "some_future_field": {"x": [1, 2]}
})";

absl::StatusOr<ModelConfig> Parse(const std::string& text) {
  absl::StatusOr<Json> json = ParseJson(text);
  if (!json.ok()) return json.status();
  return ParseModelConfig(*json);
}

std::string Edit(const std::string& from, const std::string& to) {
  return absl::StrReplaceAll(kLiteJson, {{from, to}});
}

TEST(ConfigTest, LiteConfigMatchesPreset) {
  absl::StatusOr<ModelConfig> c = Parse(kLiteJson);
  ASSERT_TRUE(c.ok()) << c.status();
  const ModelConfig p = ModelConfig::DeepSeekV2Lite();
  EXPECT_EQ(c->hidden_size, p.hidden_size);
  EXPECT_EQ(c->q_lora_rank.has_value(), false);
  EXPECT_EQ(c->latent_cache_dim(), 576);
  EXPECT_EQ(c->n_routed_experts, 64);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->factor, 40);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{100001});
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_TRUE(c->IsMoeLayer(26));
}

TEST(ConfigTest, SoftmaxScaleIncludesMscaleSquared) {
  const ModelConfig c = ModelConfig::DeepSeekV2Lite();
  EXPECT_NEAR(YarnGetMscale(40, 0.707), 1.2608037774, 1e-9);
  EXPECT_NEAR(c.SoftmaxScale(), 0.1147213868, 1e-9);
  ModelConfig plain = c;
  plain.rope_scaling.reset();
  EXPECT_NEAR(plain.SoftmaxScale(), 1.0 / std::sqrt(192.0), 1e-12);
}

TEST(ConfigTest, YarnFrequenciesOfLite) {
  const ModelConfig c = ModelConfig::DeepSeekV2Lite();
  const RopeTable t = RopeTable::FromConfig(c);
  ASSERT_EQ(t.inv_freq.size(), 32u);
  EXPECT_FLOAT_EQ(t.attn_factor, 1.0f);
  for (int i = 0; i < 32; ++i) {
    const double extra = std::pow(10000.0, -2.0 * i / 64);
    if (i <= 10) {  // unscaled
      EXPECT_NEAR(t.inv_freq[i], extra, 1e-6 * extra) << i;
    } else if (i >= 23) {  // interpolated
      EXPECT_NEAR(t.inv_freq[i], extra / 40, 1e-6 * extra) << i;
    } else {  // blended
      EXPECT_LT(t.inv_freq[i], extra);
      EXPECT_GT(t.inv_freq[i], extra / 40);
    }
  }
}

// transformers 5.x refuses an int where its schema has a float (routed_scaling_factor: 1): what
// dsv2-make-checkpoint writes spells every float field as a float, as V2-Lite's config.json does.
TEST(ConfigTest, WrittenConfigSpellsFloatsAsFloatsAndReadsBack) {
  const ModelConfig lite = ModelConfig::DeepSeekV2Lite();
  const std::string json = ModelConfigToJson(lite);
  for (const char* want :
       {"\"routed_scaling_factor\": 1.0", "\"rope_theta\": 10000.0", "\"rms_norm_eps\": 1e-06",
        "\"factor\": 40.0", "\"beta_fast\": 32.0", "\"beta_slow\": 1.0", "\"mscale\": 0.707",
        "\"mscale_all_dim\": 0.707", "\"original_max_position_embeddings\": 4096"}) {
    EXPECT_THAT(json, HasSubstr(want));
  }
  absl::StatusOr<ModelConfig> back = Parse(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->routed_scaling_factor, lite.routed_scaling_factor);
  EXPECT_EQ(back->rope_theta, lite.rope_theta);
  EXPECT_EQ(back->rms_norm_eps, lite.rms_norm_eps);
  ASSERT_TRUE(back->rope_scaling.has_value());
  EXPECT_EQ(back->rope_scaling->factor, lite.rope_scaling->factor);
  EXPECT_EQ(back->rope_scaling->mscale_all_dim, lite.rope_scaling->mscale_all_dim);
}

TEST(ConfigTest, FullV2Variants) {
  auto c = Parse(Edit("\"q_lora_rank\": null", "\"q_lora_rank\": 1536"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->q_lora_rank, 1536);
  auto g = Parse(Edit("\"topk_method\": \"greedy\", \"n_group\": 1",
                      "\"topk_method\": \"group_limited_greedy\", \"n_group\": 8"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->topk_method, TopkMethod::kGroupLimitedGreedy);
  auto old = Parse(Edit("\"greedy\"", "\"gready\""));
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->topk_method, TopkMethod::kGreedy);
  auto no_rope = Parse(Edit("\"rope_scaling\": {", "\"rope_scaling\": null, \"x\": {"));
  ASSERT_TRUE(no_rope.ok()) << no_rope.status();
  EXPECT_FALSE(no_rope->rope_scaling.has_value());
}

TEST(ConfigTest, RopeParametersSpellingOfTransformers5) {
  auto c = Parse(Edit("\"rope_scaling\": {\"type\": \"yarn\"",
                      "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 5000"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_theta, 5000);
}

TEST(ConfigTest, EosList) {
  auto c = Parse(Edit("\"eos_token_id\": 100001", "\"eos_token_id\": [100001, 7]"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{100001, 7}));
}

struct BadValue {
  const char* from;
  const char* to;
  const char* field;
};

TEST(ConfigTest, BadValuesNameTheField) {
  const BadValue cases[] = {
      {"\"hidden_size\": 2048", "\"hidden_size\": -1", "'hidden_size'"},
      {"\"hidden_size\": 2048,", "", "'hidden_size' is missing"},
      {"\"kv_lora_rank\": 512", "\"kv_lora_rank\": 1.5", "'kv_lora_rank'"},
      {"\"q_lora_rank\": null", "\"q_lora_rank\": \"big\"", "'q_lora_rank'"},
      {"\"topk_method\": \"greedy\"", "\"topk_method\": \"noaux_tc\"", "'topk_method'"},
      {"\"scoring_func\": \"softmax\"", "\"scoring_func\": \"sigmoid\"", "'scoring_func'"},
      {"\"norm_topk_prob\": false", "\"norm_topk_prob\": 0", "'norm_topk_prob'"},
      {"\"routed_scaling_factor\": 1.0", "\"routed_scaling_factor\": 0", "'routed_scaling_factor'"},
      {"\"type\": \"yarn\"", "\"type\": \"dynamic\"", "'rope_scaling.type'"},
      {"\"factor\": 40", "\"factor\": -2", "'rope_scaling.factor'"},
      {"\"num_experts_per_tok\": 6", "\"num_experts_per_tok\": 65", "'num_experts_per_tok'"},
      {"\"n_group\": 1", "\"n_group\": 3", "'n_group'"},
      {"\"qk_rope_head_dim\": 64", "\"qk_rope_head_dim\": 63", "'qk_rope_head_dim'"},
      {"\"attention_bias\": false", "\"attention_bias\": true", "'attention_bias'"},
      {"\"eos_token_id\": 100001", "\"eos_token_id\": 200000", "'eos_token_id'"},
  };
  for (const BadValue& b : cases) {
    auto c = Parse(Edit(b.from, b.to));
    ASSERT_FALSE(c.ok()) << b.to;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr(b.field)) << b.to;
  }
}

// Found by scripts/fuzz.sh: a config field holding an integer literal beyond int64 is refused by
// name instead of converting out of range (tests/unit/json_document_test.cc has the reader's side).
TEST(ConfigTest, IntegerLiteralBeyondInt64IsRefusedByName) {
  absl::StatusOr<ModelConfig> c = Parse(
      Edit("\"intermediate_size\": 10944", "\"intermediate_size\": 1933333333333333333333333"));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("intermediate_size"));
}

}  // namespace
}  // namespace dsv2
