#include "coordinator/model/gguf_export.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/gguf_pre_tokenizers.h"
#include "common/gguf_writer.h"
#include "common/json_document.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "common/weight_binder.h"
#include "kernels/cpu_context.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

// ggml's general.file_type of a scheme (informational for readers; llama.cpp prints it).
uint32_t FileType(const QuantScheme& s) {
  if (!s.enabled()) return 32;  // MOSTLY_BF16
  const std::string n = s.name();
  if (n == "q8_0") return 7;
  if (n == "q4_k_m") return 15;
  if (n == "q4_0") return 2;
  if (n == "q5_0") return 8;
  if (n == "q4_k") return 14;
  if (n == "q5_k") return 16;
  if (n == "q6_k") return 18;
  return 25;  // iq4_nl
}

class Exporter {
 public:
  Exporter(const GgufExportOptions& o, const ModelConfig& c, const Checkpoint& ckpt)
      : o_(o), c_(c), binder_(ckpt), pool_(o.threads) {}

  GgufWriter& writer() { return w_; }

  // rows × cols float values in `dtype`, on the pool.
  std::vector<uint8_t> Encode(DType dtype, int64_t rows, int64_t cols,
                              const std::function<void(int64_t r, float* out)>& row) {
    std::vector<uint8_t> bytes(rows * RowBytes(dtype, cols));
    pool_.ParallelFor(rows, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> v(cols);
      for (int64_t r = begin; r < end; ++r) {
        row(r, v.data());
        QuantizeRow(dtype, v.data(), bytes.data() + r * RowBytes(dtype, cols), cols);
      }
    });
    in_bytes_ += rows * cols * 2;
    Progress();
    return bytes;
  }

  // The scheme's format; without one, the source's (F32, F16, BF16) as it is.
  DType TypeFor(DType source, int64_t cols, bool down, bool lm_head, int64_t layer) const {
    if (!o_.scheme.enabled()) return source;
    return o_.scheme.For(cols, down, lm_head, layer, c_.num_hidden_layers);
  }

  // HF matrices [rows, cols] stacked (one, or a layer's experts) as one GGUF tensor.
  absl::Status Matrices(const std::vector<std::string>& names, const std::string& out, int64_t rows,
                        int64_t cols, bool down, bool lm_head, int64_t layer) {
    std::vector<WeightView> views;
    for (const std::string& n : names) {
      DSV2_ASSIGN_OR_RETURN(WeightView v, binder_.Matrix(n, rows, cols));
      views.push_back(v);
    }
    const DType t = TypeFor(views[0].dtype, cols, down, lm_head, layer);
    const int64_t n = static_cast<int64_t>(views.size());
    std::vector<uint8_t> bytes = Encode(t, n * rows, cols, [&](int64_t r, float* v) {
      const WeightView& w = views[r / rows];
      DequantizeRow(w.dtype, w.RowPtr(r % rows), v, cols);
    });
    std::vector<int64_t> dims = {cols, rows};
    if (names.size() > 1) dims.push_back(n);
    w_.AddTensor(out, dims, GgmlTypeOf(t), std::move(bytes));
    return absl::OkStatus();
  }

  absl::Status Vector(const std::string& name, const std::string& out, int64_t n) {
    DSV2_ASSIGN_OR_RETURN(std::vector<float> v, binder_.Vector(name, n));
    std::vector<uint8_t> bytes(n * sizeof(float));
    std::memcpy(bytes.data(), v.data(), bytes.size());
    w_.AddTensor(out, {n}, GgmlTypeOf(DType::kF32), std::move(bytes));
    return absl::OkStatus();
  }

  // kv_b_proj → attn_k_b ([heads, r, nope]: W_UKᵀ per head) and attn_v_b ([heads, v, r]).
  absl::Status KvB(const std::string& name, const std::string& p, int64_t layer) {
    const int64_t heads = c_.num_attention_heads, nope = c_.qk_nope_head_dim;
    const int64_t v = c_.v_head_dim, r = c_.kv_lora_rank;
    DSV2_ASSIGN_OR_RETURN(const WeightView kv_b, binder_.Matrix(name, heads * (nope + v), r));
    std::vector<float> all(kv_b.rows * r);
    for (int64_t i = 0; i < kv_b.rows; ++i)
      DequantizeRow(kv_b.dtype, kv_b.RowPtr(i), &all[i * r], r);
    const DType tk = TypeFor(kv_b.dtype, nope, false, false, layer);
    w_.AddTensor(p + "attn_k_b.weight", {nope, r, heads}, GgmlTypeOf(tk),
                 Encode(tk, heads * r, nope, [&](int64_t row, float* out) {
                   const int64_t h = row / r, j = row % r;
                   for (int64_t i = 0; i < nope; ++i) out[i] = all[(h * (nope + v) + i) * r + j];
                 }));
    const DType tv = TypeFor(kv_b.dtype, r, false, false, layer);
    w_.AddTensor(p + "attn_v_b.weight", {r, v, heads}, GgmlTypeOf(tv),
                 Encode(tv, heads * v, r, [&](int64_t row, float* out) {
                   const int64_t h = row / v, i = row % v;
                   std::memcpy(out, &all[(h * (nope + v) + nope + i) * r], r * sizeof(float));
                 }));
    return absl::OkStatus();
  }

 private:
  void Progress() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    std::fprintf(stderr, "dsv2-quantize: %.2f GB of weights converted, %.1f s\n", in_bytes_ / 1e9,
                 std::chrono::duration<double>(now - start_).count());
  }

  const GgufExportOptions& o_;
  const ModelConfig& c_;
  WeightBinder binder_;
  CpuContext pool_;
  GgufWriter w_;
  int64_t in_bytes_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_ = start_;
};

}  // namespace

absl::Status AddGgufTokenizer(const std::string& dir, const ModelConfig& c, GgufWriter& w) {
  if (!std::filesystem::exists(dir + "/tokenizer.json")) {
    std::fprintf(stderr,
                 "dsv2-quantize: %s has no tokenizer.json: the file carries no tokenizer (our "
                 "server reads it with token ids only; llama.cpp needs one)\n",
                 dir.c_str());
    return absl::OkStatus();
  }
  DSV2_ASSIGN_OR_RETURN(const Json tok, ParseJsonFile(dir + "/tokenizer.json"));
  const Json* model = JsonMember(tok, "model");
  const Json* vocab = model ? JsonMember(*model, "vocab") : nullptr;
  const Json* merges = model ? JsonMember(*model, "merges") : nullptr;
  if (vocab == nullptr || !vocab->is_object() || merges == nullptr || !merges->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/tokenizer.json: a BPE model with vocab and merges is expected"));
  }
  std::vector<std::string> tokens(c.vocab_size);
  std::vector<int32_t> types(c.vocab_size, 5);  // unused until given
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const int64_t id = JsonInt(it.value());
    if (id < 0 || id >= c.vocab_size) continue;
    tokens[id] = it.key();
    types[id] = 1;  // normal
  }
  if (const Json* added = JsonMember(tok, "added_tokens"); added && added->is_array()) {
    for (const Json& a : *added) {
      const int64_t id = JsonInt(a.at("id"));
      if (id < 0 || id >= c.vocab_size) continue;
      tokens[id] = a.at("content").get<std::string>();
      types[id] = a.value("special", false) ? 3 : 4;  // control : user-defined
    }
  }
  for (int64_t id = 0; id < c.vocab_size; ++id) {
    if (types[id] == 5) tokens[id] = absl::StrCat("[PAD", id, "]");
  }
  std::vector<std::string> merge_list;
  for (const Json& m : *merges) {
    merge_list.push_back(
        m.is_string() ? m.get<std::string>()
                      : absl::StrCat(m.at(0).get<std::string>(), " ", m.at(1).get<std::string>()));
  }
  // llama.cpp knows a pre-tokenizer by name only; we also keep its exact configuration.
  const Json* pre = JsonMember(tok, "pre_tokenizer");
  std::string pre_name = pre != nullptr ? GgufPreTokenizerName(*pre) : "";
  if (pre_name.empty()) {
    std::fprintf(stderr,
                 "dsv2-quantize: %s/tokenizer.json's pre-tokenizer is neither DeepSeek-V2's nor "
                 "V3's: written as 'default' for llama.cpp (our server reads its own copy)\n",
                 dir.c_str());
    pre_name = "default";
  }
  w.AddString("tokenizer.ggml.model", "gpt2");
  w.AddString("tokenizer.ggml.pre", pre_name);
  if (pre != nullptr) w.AddString("dsv2.tokenizer.pre_tokenizer", pre->dump());
  // Added tokens' flags (lstrip, rstrip, single_word, normalized) have no GGUF key either.
  if (const Json* added = JsonMember(tok, "added_tokens"); added && added->is_array()) {
    w.AddString("dsv2.tokenizer.added_tokens", added->dump());
  }
  w.AddStrings("tokenizer.ggml.tokens", tokens);
  w.AddI32s("tokenizer.ggml.token_type", types);
  w.AddStrings("tokenizer.ggml.merges", merge_list);
  // BOS/EOS: tokenizer_config.json's tokens (as the tokenizer adds them), else config.json's ids.
  int64_t bos = c.bos_token_id, eos = c.eos_token_ids.empty() ? -1 : c.eos_token_ids[0];
  bool add_bos = true, add_eos = false;
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    DSV2_ASSIGN_OR_RETURN(const Json tc, ParseJsonFile(config_path));
    auto id_of = [&](const char* key, int64_t fallback) {
      const Json* v = JsonMember(tc, key);
      if (v != nullptr && v->is_object()) v = JsonMember(*v, "content");
      if (v == nullptr || !v->is_string()) return fallback;
      for (int64_t id = 0; id < c.vocab_size; ++id) {
        if (tokens[id] == v->get_ref<const std::string&>()) return id;
      }
      return fallback;
    };
    bos = id_of("bos_token", bos);
    eos = id_of("eos_token", eos);
    if (const Json* v = JsonMember(tc, "add_bos_token"); v && v->is_boolean()) add_bos = *v;
    if (const Json* v = JsonMember(tc, "add_eos_token"); v && v->is_boolean()) add_eos = *v;
    if (const Json* t = JsonMember(tc, "chat_template"); t && t->is_string()) {
      w.AddString("tokenizer.chat_template", t->get<std::string>());
    }
  }
  if (bos >= 0) w.AddU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  if (eos >= 0) w.AddU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  w.AddBool("tokenizer.ggml.add_bos_token", add_bos);
  w.AddBool("tokenizer.ggml.add_eos_token", add_eos);
  return absl::OkStatus();
}

namespace {

void AddKeys(const ModelConfig& c, const QuantScheme& s, GgufWriter& w) {
  const std::string p = "deepseek2.";
  w.AddString("general.architecture", "deepseek2");
  w.AddString("general.type", "model");
  w.AddString("general.name", "dsv2-quantize");
  w.AddU32("general.file_type", FileType(s));
  w.AddU32("general.quantization_version", 2);
  w.AddU32(p + "block_count", c.num_hidden_layers);
  w.AddU32(p + "context_length", c.max_position_embeddings);
  w.AddU32(p + "embedding_length", c.hidden_size);
  w.AddU32(p + "feed_forward_length", c.intermediate_size);
  w.AddU32(p + "attention.head_count", c.num_attention_heads);
  w.AddU32(p + "attention.head_count_kv", 1);
  w.AddF32(p + "rope.freq_base", static_cast<float>(c.rope_theta));
  w.AddF32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.AddU32(p + "vocab_size", c.vocab_size);
  w.AddU32(p + "attention.q_lora_rank", c.q_lora_rank.value_or(0));
  w.AddU32(p + "attention.kv_lora_rank", c.kv_lora_rank);
  w.AddU32(p + "attention.key_length", c.kv_lora_rank + c.qk_rope_head_dim);
  w.AddU32(p + "attention.value_length", c.kv_lora_rank);
  w.AddU32(p + "attention.key_length_mla", c.qk_head_dim());
  w.AddU32(p + "attention.value_length_mla", c.v_head_dim);
  w.AddU32(p + "rope.dimension_count", c.qk_rope_head_dim);
  w.AddU32(p + "leading_dense_block_count", c.first_k_dense_replace);
  if (c.n_routed_experts > 0) {
    w.AddU32(p + "expert_count", c.n_routed_experts);
    w.AddU32(p + "expert_used_count", c.num_experts_per_tok);
    w.AddU32(p + "expert_shared_count", c.n_shared_experts);
    w.AddU32(p + "expert_feed_forward_length", c.moe_intermediate_size);
    w.AddF32(p + "expert_weights_scale", static_cast<float>(c.routed_scaling_factor));
    if (c.norm_topk_prob) w.AddBool(p + "expert_weights_norm", true);
    w.AddU32(p + "expert_group_count", c.n_group);
    w.AddU32(p + "expert_group_used_count", c.topk_group);
    w.AddU32(p + "expert_gating_func", 1);  // softmax
  }
  if (c.rope_scaling) {
    const YarnRopeScaling& y = *c.rope_scaling;
    w.AddString(p + "rope.scaling.type", "yarn");
    w.AddF32(p + "rope.scaling.factor", static_cast<float>(y.factor));
    w.AddU32(p + "rope.scaling.original_context_length", y.original_max_position_embeddings);
    w.AddF32(p + "rope.scaling.yarn_beta_fast", static_cast<float>(y.beta_fast));
    w.AddF32(p + "rope.scaling.yarn_beta_slow", static_cast<float>(y.beta_slow));
    w.AddF32(p + "rope.scaling.yarn_log_multiplier", static_cast<float>(0.1 * y.mscale_all_dim));
  }
}

}  // namespace

absl::Status ExportGguf(const GgufExportOptions& o) {
  DSV2_ASSIGN_OR_RETURN(const ModelConfig c, LoadModelConfig(o.model_dir));
  DSV2_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(o.model_dir));
  if (c.rope_scaling && c.rope_scaling->mscale != c.rope_scaling->mscale_all_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.model_dir, ": rope_scaling.mscale differs from mscale_all_dim; GGUF keeps only one"));
  }
  Exporter e(o, c, *ckpt);
  GgufWriter& w = e.writer();
  AddKeys(c, o.scheme, w);
  DSV2_RETURN_IF_ERROR(AddGgufTokenizer(o.model_dir, c, w));
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  DSV2_RETURN_IF_ERROR(e.Matrices({"model.embed_tokens.weight"}, "token_embd.weight", c.vocab_size,
                                  hidden, false, false, 0));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string hf = absl::StrCat("model.layers.", l, ".");
    const std::string g = absl::StrCat("blk.", l, ".");
    DSV2_RETURN_IF_ERROR(e.Vector(hf + "input_layernorm.weight", g + "attn_norm.weight", hidden));
    DSV2_RETURN_IF_ERROR(
        e.Vector(hf + "post_attention_layernorm.weight", g + "ffn_norm.weight", hidden));
    const std::string a = hf + "self_attn.";
    if (c.q_lora_rank) {
      DSV2_RETURN_IF_ERROR(e.Matrices({a + "q_a_proj.weight"}, g + "attn_q_a.weight",
                                      *c.q_lora_rank, hidden, false, false, l));
      DSV2_RETURN_IF_ERROR(
          e.Vector(a + "q_a_layernorm.weight", g + "attn_q_a_norm.weight", *c.q_lora_rank));
      DSV2_RETURN_IF_ERROR(e.Matrices({a + "q_b_proj.weight"}, g + "attn_q_b.weight",
                                      heads * c.qk_head_dim(), *c.q_lora_rank, false, false, l));
    } else {
      DSV2_RETURN_IF_ERROR(e.Matrices({a + "q_proj.weight"}, g + "attn_q.weight",
                                      heads * c.qk_head_dim(), hidden, false, false, l));
    }
    DSV2_RETURN_IF_ERROR(e.Matrices({a + "kv_a_proj_with_mqa.weight"}, g + "attn_kv_a_mqa.weight",
                                    c.latent_cache_dim(), hidden, false, false, l));
    DSV2_RETURN_IF_ERROR(
        e.Vector(a + "kv_a_layernorm.weight", g + "attn_kv_a_norm.weight", c.kv_lora_rank));
    DSV2_RETURN_IF_ERROR(e.KvB(a + "kv_b_proj.weight", g, l));
    DSV2_RETURN_IF_ERROR(e.Matrices({a + "o_proj.weight"}, g + "attn_output.weight", hidden,
                                    heads * c.v_head_dim, false, false, l));
    auto mlp = [&](const std::vector<std::string>& prefixes, const std::string& suffix,
                   int64_t width) -> absl::Status {
      for (const char* part : {"gate", "up", "down"}) {
        std::vector<std::string> names;
        for (const std::string& pre : prefixes)
          names.push_back(absl::StrCat(pre, part, "_proj.weight"));
        const bool down = std::string(part) == "down";
        DSV2_RETURN_IF_ERROR(e.Matrices(names, absl::StrCat(g, "ffn_", part, suffix, ".weight"),
                                        down ? hidden : width, down ? width : hidden, down, false,
                                        l));
      }
      return absl::OkStatus();
    };
    if (!c.IsMoeLayer(l)) {
      DSV2_RETURN_IF_ERROR(mlp({hf + "mlp."}, "", c.intermediate_size));
      continue;
    }
    {  // the router gate stays float32 (llama.cpp's converter keeps it so)
      DSV2_ASSIGN_OR_RETURN(
          const TensorInfo* gate,
          WeightBinder(*ckpt).Get(hf + "mlp.gate.weight", {c.n_routed_experts, hidden}));
      std::vector<uint8_t> bytes(c.n_routed_experts * hidden * sizeof(float));
      DequantizeRow(*gate->dtype, gate->data, reinterpret_cast<float*>(bytes.data()),
                    c.n_routed_experts * hidden);
      w.AddTensor(g + "ffn_gate_inp.weight", {hidden, c.n_routed_experts}, 0, std::move(bytes));
    }
    std::vector<std::string> experts;
    for (int64_t x = 0; x < c.n_routed_experts; ++x) {
      experts.push_back(absl::StrCat(hf, "mlp.experts.", x, "."));
    }
    DSV2_RETURN_IF_ERROR(mlp(experts, "_exps", c.moe_intermediate_size));
    if (c.n_shared_experts > 0) {
      DSV2_RETURN_IF_ERROR(mlp({hf + "mlp.shared_experts."}, "_shexp",
                               c.n_shared_experts * c.moe_intermediate_size));
    }
  }
  DSV2_RETURN_IF_ERROR(e.Vector("model.norm.weight", "output_norm.weight", hidden));
  if (!(c.tie_word_embeddings && ckpt->Find("lm_head.weight") == nullptr)) {
    DSV2_RETURN_IF_ERROR(e.Matrices({"lm_head.weight"}, "output.weight", c.vocab_size, hidden,
                                    false, true, c.num_hidden_layers - 1));
  }
  std::fprintf(stderr, "dsv2-quantize: writing %s\n", o.out.c_str());
  return w.Write(o.out);
}

}  // namespace dsv2
