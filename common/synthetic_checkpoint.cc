#include "common/synthetic_checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/dtype.h"

namespace dsv2 {
namespace {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float scale;  // values uniform in [-scale, scale]; 0: a norm weight (all near 1)
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::vector<TensorSpec> TensorSpecs(const ModelConfig& c) {
  std::vector<TensorSpec> t;
  const int64_t H = c.hidden_size, heads = c.num_attention_heads;
  // Uniform(-a, a) has std a/√3: a = √3/√fan_in keeps activations O(1).
  auto lin = [&](std::string name, int64_t out, int64_t in) {
    t.push_back({std::move(name), {out, in}, static_cast<float>(std::sqrt(3.0 / in))});
  };
  auto norm = [&](std::string name, int64_t n) { t.push_back({std::move(name), {n}, 0.0f}); };
  auto mlp = [&](const std::string& p, int64_t width) {
    lin(p + ".gate_proj.weight", width, H);
    lin(p + ".up_proj.weight", width, H);
    lin(p + ".down_proj.weight", H, width);
  };
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, H}, 1.0f});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    norm(p + "input_layernorm.weight", H);
    norm(p + "post_attention_layernorm.weight", H);
    const std::string a = p + "self_attn.";
    if (c.q_lora_rank) {
      lin(a + "q_a_proj.weight", *c.q_lora_rank, H);
      norm(a + "q_a_layernorm.weight", *c.q_lora_rank);
      lin(a + "q_b_proj.weight", heads * c.qk_head_dim(), *c.q_lora_rank);
    } else {
      lin(a + "q_proj.weight", heads * c.qk_head_dim(), H);
    }
    lin(a + "kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, H);
    norm(a + "kv_a_layernorm.weight", c.kv_lora_rank);
    lin(a + "kv_b_proj.weight", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    lin(a + "o_proj.weight", H, heads * c.v_head_dim);
    if (!c.IsMoeLayer(l)) {
      mlp(p + "mlp", c.intermediate_size);
      continue;
    }
    lin(p + "mlp.gate.weight", c.n_routed_experts, H);
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      mlp(absl::StrCat(p, "mlp.experts.", e), c.moe_intermediate_size);
    }
    if (c.n_shared_experts > 0) {
      mlp(p + "mlp.shared_experts", c.n_shared_experts * c.moe_intermediate_size);
    }
  }
  norm("model.norm.weight", H);
  if (!c.tie_word_embeddings) lin("lm_head.weight", c.vocab_size, H);
  return t;
}

// splitmix64: fast, deterministic, good enough for random weights.
uint64_t Mix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void FillBf16(const TensorSpec& spec, uint64_t seed, std::vector<uint16_t>& out) {
  out.resize(spec.numel());
  uint64_t s = seed;
  for (int64_t i = 0; i < spec.numel(); i += 4) {
    const uint64_t r = Mix(s);
    for (int64_t j = 0; j < 4 && i + j < spec.numel(); ++j) {
      const float u = static_cast<float>((r >> (16 * j)) & 0xffff) / 65535.0f * 2.0f - 1.0f;
      out[i + j] = FloatToBf16(spec.scale == 0.0f ? 1.0f + 0.05f * u : spec.scale * u);
    }
  }
}

std::string Header(const std::vector<const TensorSpec*>& specs) {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  int64_t offset = 0;
  for (const TensorSpec* s : specs) {
    const int64_t bytes = s->numel() * 2;
    h += absl::StrCat(",\"", s->name, "\":{\"dtype\":\"BF16\",\"shape\":[",
                      absl::StrJoin(s->shape, ","), "],\"data_offsets\":[", offset, ",",
                      offset + bytes, "]}");
    offset += bytes;
  }
  h += "}";
  while ((h.size() + 8) % 8 != 0) h += ' ';  // align the data section
  return h;
}

}  // namespace

ModelConfig SmallModelConfig() {
  ModelConfig c = ModelConfig::DeepSeekV2Lite();
  c.hidden_size = 256;
  c.intermediate_size = 768;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.kv_lora_rank = 128;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 32;
  c.n_routed_experts = 16;
  return c;
}

namespace {

// A JSON number that reads back as a float, never as an integer: 1 -> "1.0", 1e-06 -> "1e-06".
// transformers 5.x validates config fields by type and refuses an int where it wants a float.
std::string JsonFloat(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round trip
  std::string s(buf, ec == std::errc() ? end : buf);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // "n": inf/nan stay as they are
  return s;
}

}  // namespace

std::string ModelConfigToJson(const ModelConfig& c) {
  std::string rope = "null";
  if (c.rope_scaling) {
    const YarnRopeScaling& y = *c.rope_scaling;
    rope = absl::StrCat(
        "{\"type\": \"yarn\", \"factor\": ", JsonFloat(y.factor),
        ", \"original_max_position_embeddings\": ", y.original_max_position_embeddings,
        ", \"beta_fast\": ", JsonFloat(y.beta_fast), ", \"beta_slow\": ", JsonFloat(y.beta_slow),
        ", \"mscale\": ", JsonFloat(y.mscale),
        ", \"mscale_all_dim\": ", JsonFloat(y.mscale_all_dim), "}");
  }
  const char* method = c.topk_method == TopkMethod::kGreedy ? "greedy" : "group_limited_greedy";
  return absl::StrCat(
      "{\n  \"architectures\": [\"DeepseekV2ForCausalLM\"],\n  \"model_type\": \"deepseek_v2\",\n",
      "  \"torch_dtype\": \"bfloat16\",\n  \"hidden_size\": ", c.hidden_size,
      ",\n  \"intermediate_size\": ", c.intermediate_size,
      ",\n  \"moe_intermediate_size\": ", c.moe_intermediate_size,
      ",\n  \"num_hidden_layers\": ", c.num_hidden_layers,
      ",\n  \"num_attention_heads\": ", c.num_attention_heads,
      ",\n  \"num_key_value_heads\": ", c.num_attention_heads,
      ",\n  \"vocab_size\": ", c.vocab_size,
      ",\n  \"q_lora_rank\": ", c.q_lora_rank ? absl::StrCat(*c.q_lora_rank) : "null",
      ",\n  \"kv_lora_rank\": ", c.kv_lora_rank, ",\n  \"qk_nope_head_dim\": ", c.qk_nope_head_dim,
      ",\n  \"qk_rope_head_dim\": ", c.qk_rope_head_dim, ",\n  \"v_head_dim\": ", c.v_head_dim,
      ",\n  \"attention_bias\": false,\n  \"n_routed_experts\": ", c.n_routed_experts,
      ",\n  \"n_shared_experts\": ", c.n_shared_experts,
      ",\n  \"num_experts_per_tok\": ", c.num_experts_per_tok,
      ",\n  \"first_k_dense_replace\": ", c.first_k_dense_replace,
      ",\n  \"moe_layer_freq\": ", c.moe_layer_freq, ",\n  \"topk_method\": \"", method,
      "\",\n  \"n_group\": ", c.n_group, ",\n  \"topk_group\": ", c.topk_group,
      ",\n  \"norm_topk_prob\": ", c.norm_topk_prob ? "true" : "false",
      ",\n  \"routed_scaling_factor\": ", JsonFloat(c.routed_scaling_factor),
      ",\n  \"scoring_func\": \"softmax\",\n  \"rms_norm_eps\": ", JsonFloat(c.rms_norm_eps),
      ",\n  \"rope_theta\": ", JsonFloat(c.rope_theta),
      ",\n  \"max_position_embeddings\": ", c.max_position_embeddings,
      ",\n  \"rope_scaling\": ", rope, ",\n  \"bos_token_id\": ", c.bos_token_id,
      ",\n  \"eos_token_id\": ", c.eos_token_ids.empty() ? -1 : c.eos_token_ids[0],
      ",\n  \"tie_word_embeddings\": ", c.tie_word_embeddings ? "true" : "false", "\n}\n");
}

absl::Status WriteSyntheticCheckpoint(const ModelConfig& config, const std::string& dir,
                                      const SyntheticCheckpointOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  {
    std::ofstream f(fs::path(dir) / "config.json");
    f << ModelConfigToJson(config);
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", dir, "/config.json"));
  }
  const std::vector<TensorSpec> specs = TensorSpecs(config);
  int64_t total = 0;
  for (const TensorSpec& s : specs) total += s.numel() * 2;
  // Contiguous runs of tensors of about total / num_shards bytes per shard.
  const int shards = std::max(1, options.num_shards);
  std::vector<std::vector<const TensorSpec*>> shard_specs(shards);
  int64_t acc = 0;
  for (const TensorSpec& s : specs) {
    const int idx = std::min<int64_t>(shards - 1, acc * shards / std::max<int64_t>(total, 1));
    shard_specs[idx].push_back(&s);
    acc += s.numel() * 2;
  }
  std::string index =
      "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + "},\n  \"weight_map\": {";
  bool first = true;
  int64_t written = 0;
  std::vector<uint16_t> values;
  for (int i = 0; i < shards; ++i) {
    const std::string name = absl::StrFormat("model-%05d-of-%06d.safetensors", i + 1, shards);
    std::ofstream f(fs::path(dir) / name, std::ios::binary | std::ios::trunc);
    const std::string header = Header(shard_specs[i]);
    uint64_t len = header.size();
    char len_bytes[8];
    for (int b = 0; b < 8; ++b) len_bytes[b] = static_cast<char>((len >> (8 * b)) & 0xff);
    f.write(len_bytes, 8);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const TensorSpec* s : shard_specs[i]) {
      uint64_t seed = options.seed;
      for (char ch : s->name) seed = seed * 131 + static_cast<unsigned char>(ch);
      FillBf16(*s, seed, values);
      f.write(reinterpret_cast<const char*>(values.data()),
              static_cast<std::streamsize>(values.size() * 2));
      written += s->numel() * 2;
      index += absl::StrCat(first ? "\n" : ",\n", "    \"", s->name, "\": \"", name, "\"");
      first = false;
      if (options.progress) options.progress(written, total);
    }
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", dir, "/", name));
  }
  index += "\n  }\n}\n";
  std::ofstream idx(fs::path(dir) / "model.safetensors.index.json");
  idx << index;
  if (!idx) return absl::InternalError(absl::StrCat("cannot write the index in ", dir));
  return absl::OkStatus();
}

}  // namespace dsv2
