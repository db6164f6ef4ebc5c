// ModelConfig: the fields of a DeepSeek-V2-family config.json (REFERENCE.md §1), parsed and
// validated. Unknown fields are ignored; a bad value is an error naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json_document.h"

namespace dsv2 {

enum class TopkMethod { kGreedy, kGroupLimitedGreedy };

struct YarnRopeScaling {
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  // sizes
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense MLP width
  int64_t moe_intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t vocab_size = 0;
  // MLA attention
  std::optional<int64_t> q_lora_rank;  // nullopt: q_proj; set: q_a_proj → norm → q_b_proj
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  // MoE
  int64_t n_routed_experts = 0;  // 0: every layer is dense
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  TopkMethod topk_method = TopkMethod::kGreedy;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  // norm and rope
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 4096;
  std::optional<YarnRopeScaling> rope_scaling;
  // tokens
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  bool tie_word_embeddings = false;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Values per token per layer in the latent KV cache: kv_lora_rank + qk_rope_head_dim.
  int64_t latent_cache_dim() const { return kv_lora_rank + qk_rope_head_dim; }
  bool IsMoeLayer(int64_t layer) const;
  // (qk_nope + qk_rope)^-0.5 · m², m = yarn_get_mscale(factor, mscale_all_dim) (REFERENCE §3).
  double SoftmaxScale() const;

  // The published DeepSeek-V2-Lite config (REFERENCE §1).
  static ModelConfig DeepSeekV2Lite();
};

// yarn_get_mscale(s, m) = 1 if s <= 1 else 0.1·m·ln(s) + 1.
double YarnGetMscale(double scale, double mscale);

absl::StatusOr<ModelConfig> ParseModelConfig(const Json& json);
// The checks ParseModelConfig runs, for configs made another way (a GGUF file's keys); errors
// name the field.
absl::Status ValidateModelConfig(const ModelConfig& c);
// Reads <dir>/config.json or a config file path; errors name the file and field.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace dsv2
