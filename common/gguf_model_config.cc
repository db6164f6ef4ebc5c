#include "common/gguf_model_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv2 {

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufModel& g) {
  const std::string& path = g.first().path();
  DSV2_ASSIGN_OR_RETURN(const std::string arch, g.String("general.architecture"));
  if (arch != "deepseek2") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": general.architecture is '", arch,
                                                   "'; this server reads 'deepseek2' models"));
  }
  const std::string p = "deepseek2.";
  auto contradiction = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": GGUF keys contradict: ", what));
  };
  ModelConfig c;
  DSV2_ASSIGN_OR_RETURN(c.hidden_size, g.Int(p + "embedding_length"));
  DSV2_ASSIGN_OR_RETURN(c.num_hidden_layers, g.Int(p + "block_count"));
  DSV2_ASSIGN_OR_RETURN(c.num_attention_heads, g.Int(p + "attention.head_count"));
  c.intermediate_size = g.OptionalInt(p + "feed_forward_length").value_or(0);
  if (auto v = g.OptionalInt(p + "vocab_size")) {
    c.vocab_size = *v;
  } else if (const GgufValue* tokens = g.first().Find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(tokens->strings.size());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": GGUF key '", p, "vocab_size' is missing (and no token list)"));
  }
  const int64_t q_lora = g.OptionalInt(p + "attention.q_lora_rank").value_or(0);
  if (q_lora > 0) c.q_lora_rank = q_lora;
  DSV2_ASSIGN_OR_RETURN(c.kv_lora_rank, g.Int(p + "attention.kv_lora_rank"));
  DSV2_ASSIGN_OR_RETURN(c.qk_rope_head_dim, g.Int(p + "rope.dimension_count"));
  DSV2_ASSIGN_OR_RETURN(const int64_t key_length, g.Int(p + "attention.key_length"));
  DSV2_ASSIGN_OR_RETURN(const int64_t value_length, g.Int(p + "attention.value_length"));
  if (auto k = g.OptionalInt(p + "attention.key_length_mla")) {
    // Newer files: key/value_length describe the absorbed (MQA) view, *_mla the heads.
    DSV2_ASSIGN_OR_RETURN(c.v_head_dim, g.Int(p + "attention.value_length_mla"));
    c.qk_nope_head_dim = *k - c.qk_rope_head_dim;
    if (key_length != c.kv_lora_rank + c.qk_rope_head_dim || value_length != c.kv_lora_rank) {
      return contradiction(absl::StrCat("attention.key_length ", key_length, " / value_length ",
                                        value_length, " are not kv_lora_rank + rope (",
                                        c.kv_lora_rank + c.qk_rope_head_dim, ") / kv_lora_rank"));
    }
  } else {
    c.qk_nope_head_dim = key_length - c.qk_rope_head_dim;
    c.v_head_dim = value_length;
  }
  if (c.qk_nope_head_dim < 1) {
    return contradiction(
        absl::StrCat("the key length leaves ", c.qk_nope_head_dim, " non-rope dimensions"));
  }
  if (auto kv_heads = g.OptionalInt(p + "attention.head_count_kv");
      kv_heads && *kv_heads != 1 && *kv_heads != c.num_attention_heads) {
    return contradiction(absl::StrCat("attention.head_count_kv ", *kv_heads));
  }
  c.n_routed_experts = g.OptionalInt(p + "expert_count").value_or(0);
  if (c.n_routed_experts > 0) {
    DSV2_ASSIGN_OR_RETURN(c.num_experts_per_tok, g.Int(p + "expert_used_count"));
    DSV2_ASSIGN_OR_RETURN(c.moe_intermediate_size, g.Int(p + "expert_feed_forward_length"));
    c.n_shared_experts = g.OptionalInt(p + "expert_shared_count").value_or(0);
    c.first_k_dense_replace = g.OptionalInt(p + "leading_dense_block_count").value_or(0);
    c.routed_scaling_factor = g.OptionalFloat(p + "expert_weights_scale").value_or(1.0);
    c.norm_topk_prob = g.OptionalInt(p + "expert_weights_norm").value_or(0) != 0;
    c.n_group = g.OptionalInt(p + "expert_group_count").value_or(1);
    c.topk_group = g.OptionalInt(p + "expert_group_used_count").value_or(1);
    c.topk_method = c.n_group > 1 ? TopkMethod::kGroupLimitedGreedy : TopkMethod::kGreedy;
    const int64_t gating = g.OptionalInt(p + "expert_gating_func").value_or(1);
    if (gating != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", p, "expert_gating_func ", gating,
          " is not supported (1, softmax, is DeepSeek-V2's; 2, sigmoid, is DeepSeek-V3's)"));
    }
  } else {
    c.first_k_dense_replace = c.num_hidden_layers;
  }
  DSV2_ASSIGN_OR_RETURN(c.rms_norm_eps, g.Float(p + "attention.layer_norm_rms_epsilon"));
  c.rope_theta = g.OptionalFloat(p + "rope.freq_base").value_or(10000.0);
  c.max_position_embeddings = g.OptionalInt(p + "context_length").value_or(4096);
  const absl::StatusOr<std::string> scaling = g.String(p + "rope.scaling.type");
  if (scaling.ok() && *scaling == "yarn") {
    YarnRopeScaling y;
    DSV2_ASSIGN_OR_RETURN(y.factor, g.Float(p + "rope.scaling.factor"));
    DSV2_ASSIGN_OR_RETURN(y.original_max_position_embeddings,
                          g.Int(p + "rope.scaling.original_context_length"));
    y.beta_fast = g.OptionalFloat(p + "rope.scaling.yarn_beta_fast").value_or(32.0);
    y.beta_slow = g.OptionalFloat(p + "rope.scaling.yarn_beta_slow").value_or(1.0);
    y.mscale_all_dim = g.OptionalFloat(p + "rope.scaling.yarn_log_multiplier").value_or(0.0) / 0.1;
    y.mscale = y.mscale_all_dim != 0.0 ? y.mscale_all_dim : 1.0;
    c.rope_scaling = y;
  } else if (scaling.ok() && *scaling != "none") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", p, "rope.scaling.type '", *scaling,
                                                   "' is not supported (yarn, none)"));
  }
  c.bos_token_id = g.OptionalInt("tokenizer.ggml.bos_token_id").value_or(-1);
  if (auto eos = g.OptionalInt("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.tie_word_embeddings = g.FindTensor("output.weight") == nullptr;
  absl::Status valid = ValidateModelConfig(c);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadAnyModelConfig(const std::string& model) {
  if (!IsGgufPath(model)) return LoadModelConfig(model);
  DSV2_ASSIGN_OR_RETURN(std::unique_ptr<GgufModel> g, GgufModel::Open(model));
  return ModelConfigFromGguf(*g);
}

}  // namespace dsv2
