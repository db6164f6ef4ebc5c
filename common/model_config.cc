#include "common/model_config.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/router_topk.h"

namespace dsv2 {

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

double YarnGetMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

double ModelConfig::SoftmaxScale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope_scaling && rope_scaling->mscale_all_dim != 0.0) {
    const double m = YarnGetMscale(rope_scaling->factor, rope_scaling->mscale_all_dim);
    scale *= m * m;
  }
  return scale;
}

ModelConfig ModelConfig::DeepSeekV2Lite() {
  ModelConfig c;
  c.hidden_size = 2048;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.vocab_size = 102400;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.first_k_dense_replace = 1;
  c.max_position_embeddings = 163840;
  c.rope_scaling = YarnRopeScaling{.factor = 40,
                                   .original_max_position_embeddings = 4096,
                                   .beta_fast = 32,
                                   .beta_slow = 1,
                                   .mscale = 0.707,
                                   .mscale_all_dim = 0.707};
  c.bos_token_id = 100000;
  c.eos_token_ids = {100001};
  return c;
}

namespace {

// Typed access to the fields of one JSON object; every error names the field.
class FieldReader {
 public:
  FieldReader(const Json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  absl::Status Int(absl::string_view name, int64_t& out, bool required, int64_t min_value) const {
    const Json* v = JsonMember(obj_, std::string_view(name.data(), name.size()));
    if (v == nullptr || v->is_null()) {
      return required ? Missing(name) : absl::OkStatus();
    }
    if (!v->is_number() || std::floor(v->get<double>()) != v->get<double>() ||
        v->get<double>() < -0x1p63 || v->get<double>() >= 0x1p63) {
      return Bad(name, "an integer", *v);
    }
    if (JsonInt(*v) < min_value) return Bad(name, absl::StrCat("an integer >= ", min_value), *v);
    out = JsonInt(*v);
    return absl::OkStatus();
  }

  absl::Status Double(absl::string_view name, double& out, bool positive) const {
    const Json* v = JsonMember(obj_, std::string_view(name.data(), name.size()));
    if (v == nullptr || v->is_null()) return absl::OkStatus();
    if (!v->is_number() || !std::isfinite(v->get<double>())) return Bad(name, "a number", *v);
    if (positive && !(v->get<double>() > 0)) return Bad(name, "a positive number", *v);
    out = v->get<double>();
    return absl::OkStatus();
  }

  absl::Status Bool(absl::string_view name, bool& out) const {
    const Json* v = JsonMember(obj_, std::string_view(name.data(), name.size()));
    if (v == nullptr || v->is_null()) return absl::OkStatus();
    if (!v->is_boolean()) return Bad(name, "true or false", *v);
    out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status Missing(absl::string_view name) const {
    return absl::InvalidArgumentError(absl::StrCat("field '", prefix_, name, "' is missing"));
  }
  absl::Status Bad(absl::string_view name, absl::string_view expected, const Json& v) const {
    std::string got = v.type_name();
    if (v.is_number()) got = absl::StrCat(v.get<double>());
    if (v.is_string()) got = absl::StrCat("\"", v.get_ref<const std::string&>(), "\"");
    return absl::InvalidArgumentError(
        absl::StrCat("field '", prefix_, name, "': expected ", expected, ", got ", got));
  }

 private:
  const Json& obj_;
  std::string prefix_;
};

absl::Status ParseRopeScaling(const Json& rs, absl::string_view field, ModelConfig& c) {
  if (rs.is_null()) return absl::OkStatus();
  FieldReader top(rs, "");
  if (!rs.is_object()) return top.Bad(field, "an object or null", rs);
  const Json* type = JsonMember(rs, "type");
  if (type == nullptr) type = JsonMember(rs, "rope_type");
  const std::string where = absl::StrCat(field, ".type");
  if (type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", where, "' is missing"));
  }
  if (type->get_ref<const std::string&>() == "default") return absl::OkStatus();
  if (type->get_ref<const std::string&>() != "yarn") {
    return absl::InvalidArgumentError(absl::StrCat("field '", where, "': unsupported rope type \"",
                                                   type->get_ref<const std::string&>(),
                                                   "\" (supported: yarn)"));
  }
  FieldReader r(rs, absl::StrCat(field, "."));
  YarnRopeScaling y;
  DSV2_RETURN_IF_ERROR(r.Double("factor", y.factor, /*positive=*/true));
  DSV2_RETURN_IF_ERROR(
      r.Int("original_max_position_embeddings", y.original_max_position_embeddings, false, 1));
  DSV2_RETURN_IF_ERROR(r.Double("beta_fast", y.beta_fast, true));
  DSV2_RETURN_IF_ERROR(r.Double("beta_slow", y.beta_slow, true));
  DSV2_RETURN_IF_ERROR(r.Double("mscale", y.mscale, false));
  DSV2_RETURN_IF_ERROR(r.Double("mscale_all_dim", y.mscale_all_dim, false));
  // transformers 5.x nests rope_theta inside rope_parameters.
  DSV2_RETURN_IF_ERROR(r.Double("rope_theta", c.rope_theta, true));
  c.rope_scaling = y;
  return absl::OkStatus();
}

absl::Status Validate(const ModelConfig& c) {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", why));
  };
  if (c.qk_rope_head_dim % 2 != 0) return bad("qk_rope_head_dim", "must be even");
  if (c.n_routed_experts > 0) {
    // The router's per-token scratch (kernels/router_topk.h) bounds both.
    if (c.n_routed_experts > kMaxRoutedExperts) {
      return bad("n_routed_experts", absl::StrCat("at most ", kMaxRoutedExperts, " are supported"));
    }
    if (c.num_experts_per_tok > kMaxRouterTopK) {
      return bad("num_experts_per_tok", absl::StrCat("at most ", kMaxRouterTopK, " are supported"));
    }
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.n_routed_experts) {
      return bad("num_experts_per_tok", "must be in [1, n_routed_experts]");
    }
    if (c.moe_intermediate_size < 1) return bad("moe_intermediate_size", "must be positive");
    if (c.n_group < 1 || c.n_routed_experts % c.n_group != 0) {
      return bad("n_group", "must divide n_routed_experts");
    }
    if (c.topk_group < 1 || c.topk_group > c.n_group)
      return bad("topk_group", "must be in [1, n_group]");
    if (c.topk_method == TopkMethod::kGroupLimitedGreedy &&
        c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group)) {
      return bad("num_experts_per_tok", "exceeds the experts in the top groups");
    }
  }
  if (c.first_k_dense_replace < c.num_hidden_layers || c.n_routed_experts == 0) {
    if (c.intermediate_size < 1) return bad("intermediate_size", "must be positive (dense layers)");
  }
  if (c.bos_token_id >= c.vocab_size) return bad("bos_token_id", "must be < vocab_size");
  for (int64_t e : c.eos_token_ids) {
    if (e >= c.vocab_size) return bad("eos_token_id", "must be < vocab_size");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& c) { return Validate(c); }

absl::StatusOr<ModelConfig> ParseModelConfig(const Json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("config: expected a JSON object");
  FieldReader r(json, "");
  ModelConfig c;
  DSV2_RETURN_IF_ERROR(r.Int("hidden_size", c.hidden_size, true, 1));
  DSV2_RETURN_IF_ERROR(r.Int("intermediate_size", c.intermediate_size, false, 0));
  DSV2_RETURN_IF_ERROR(r.Int("moe_intermediate_size", c.moe_intermediate_size, false, 0));
  DSV2_RETURN_IF_ERROR(r.Int("num_hidden_layers", c.num_hidden_layers, true, 1));
  DSV2_RETURN_IF_ERROR(r.Int("num_attention_heads", c.num_attention_heads, true, 1));
  int64_t kv_heads = c.num_attention_heads;
  DSV2_RETURN_IF_ERROR(r.Int("num_key_value_heads", kv_heads, false, 1));
  DSV2_RETURN_IF_ERROR(r.Int("vocab_size", c.vocab_size, true, 1));
  int64_t q_lora = 0;
  const Json* ql = JsonMember(json, "q_lora_rank");
  if (ql != nullptr && !ql->is_null()) {
    DSV2_RETURN_IF_ERROR(r.Int("q_lora_rank", q_lora, true, 1));
    c.q_lora_rank = q_lora;
  }
  DSV2_RETURN_IF_ERROR(r.Int("kv_lora_rank", c.kv_lora_rank, true, 1));
  DSV2_RETURN_IF_ERROR(r.Int("qk_nope_head_dim", c.qk_nope_head_dim, true, 1));
  DSV2_RETURN_IF_ERROR(r.Int("qk_rope_head_dim", c.qk_rope_head_dim, true, 2));
  DSV2_RETURN_IF_ERROR(r.Int("v_head_dim", c.v_head_dim, true, 1));
  bool attention_bias = false;
  DSV2_RETURN_IF_ERROR(r.Bool("attention_bias", attention_bias));
  if (attention_bias) {
    return absl::InvalidArgumentError(
        "field 'attention_bias': true is not supported (DeepSeek-V2 checkpoints have no biases)");
  }
  DSV2_RETURN_IF_ERROR(r.Int("n_routed_experts", c.n_routed_experts, false, 0));
  DSV2_RETURN_IF_ERROR(r.Int("n_shared_experts", c.n_shared_experts, false, 0));
  DSV2_RETURN_IF_ERROR(r.Int("num_experts_per_tok", c.num_experts_per_tok, false, 0));
  DSV2_RETURN_IF_ERROR(r.Int("first_k_dense_replace", c.first_k_dense_replace, false, 0));
  DSV2_RETURN_IF_ERROR(r.Int("moe_layer_freq", c.moe_layer_freq, false, 1));
  if (const Json* m = JsonMember(json, "topk_method"); m != nullptr && !m->is_null()) {
    if (!m->is_string()) return r.Bad("topk_method", "a string", *m);
    const std::string& s = m->get_ref<const std::string&>();
    if (s == "greedy" || s == "gready") {
      c.topk_method = TopkMethod::kGreedy;
    } else if (s == "group_limited_greedy") {
      c.topk_method = TopkMethod::kGroupLimitedGreedy;
    } else {
      return r.Bad("topk_method", "\"greedy\" or \"group_limited_greedy\"", *m);
    }
  }
  DSV2_RETURN_IF_ERROR(r.Int("n_group", c.n_group, false, 1));
  DSV2_RETURN_IF_ERROR(r.Int("topk_group", c.topk_group, false, 1));
  DSV2_RETURN_IF_ERROR(r.Bool("norm_topk_prob", c.norm_topk_prob));
  DSV2_RETURN_IF_ERROR(r.Double("routed_scaling_factor", c.routed_scaling_factor, true));
  if (const Json* s = JsonMember(json, "scoring_func"); s != nullptr && !s->is_null()) {
    if (!s->is_string() || s->get_ref<const std::string&>() != "softmax") {
      return r.Bad("scoring_func", "\"softmax\" (the only scoring of DeepSeek-V2)", *s);
    }
  }
  DSV2_RETURN_IF_ERROR(r.Double("rms_norm_eps", c.rms_norm_eps, true));
  DSV2_RETURN_IF_ERROR(r.Double("rope_theta", c.rope_theta, true));
  DSV2_RETURN_IF_ERROR(r.Int("max_position_embeddings", c.max_position_embeddings, false, 1));
  if (const Json* rs = JsonMember(json, "rope_scaling"); rs != nullptr) {
    DSV2_RETURN_IF_ERROR(ParseRopeScaling(*rs, "rope_scaling", c));
  } else if (const Json* rp = JsonMember(json, "rope_parameters"); rp != nullptr) {
    DSV2_RETURN_IF_ERROR(ParseRopeScaling(*rp, "rope_parameters", c));
  }
  DSV2_RETURN_IF_ERROR(r.Int("bos_token_id", c.bos_token_id, false, 0));
  if (const Json* e = JsonMember(json, "eos_token_id"); e != nullptr && !e->is_null()) {
    if (e->is_array()) {
      for (const Json& id : *e) {
        if (!IsJsonInteger(id) || JsonInt(id) < 0) return r.Bad("eos_token_id", "token ids", id);
        c.eos_token_ids.push_back(JsonInt(id));
      }
    } else {
      int64_t id = 0;
      DSV2_RETURN_IF_ERROR(r.Int("eos_token_id", id, true, 0));
      c.eos_token_ids.push_back(id);
    }
  }
  DSV2_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", c.tie_word_embeddings));
  DSV2_RETURN_IF_ERROR(Validate(c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(file))
    file = (std::filesystem::path(path) / "config.json").string();
  absl::StatusOr<Json> json = ParseJsonFile(file);
  if (!json.ok()) return json.status();
  absl::StatusOr<ModelConfig> c = ParseModelConfig(*json);
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat(file, ": ", c.status().message()));
  return c;
}

}  // namespace dsv2
