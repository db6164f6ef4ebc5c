#include "coordinator/model/gguf_weights.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

class GgufBinder {
 public:
  GgufBinder(const GgufModel& g, ModelWeights& w) : g_(g), w_(w) {}

  // The tensor `name` with ggml dims `dims` (innermost first) and a type the engine reads.
  absl::StatusOr<const GgufTensor*> Get(const std::string& name, std::vector<int64_t> dims) {
    const GgufTensor* t = g_.FindTensor(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat(g_.first().path(), ": tensor '", name,
                                              "' is missing (expected [", absl::StrJoin(dims, ", "),
                                              "])"));
    }
    if (t->dims != dims) {
      return absl::InvalidArgumentError(absl::StrCat(
          t->file, ": tensor '", name, "' has shape ", t->ShapeString(), ", expected [",
          absl::StrJoin(dims, ", "), "] (ggml order, innermost first)"));
    }
    if (!t->dtype || t->data == nullptr || *t->dtype == DType::kI32 || *t->dtype == DType::kI64) {
      return absl::InvalidArgumentError(absl::StrCat(
          t->file, ": tensor '", name, "' is ", GgmlTypeName(t->ggml_type),
          ", which this server does not read (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, "
          "Q6_K, IQ4_NL)"));
    }
    return t;
  }

  bool Has(const std::string& name) const { return g_.FindTensor(name) != nullptr; }

  // A [rows, cols] matrix: ggml dims [cols, rows].
  absl::StatusOr<WeightView> Matrix(const std::string& name, int64_t rows, int64_t cols) {
    DSV2_ASSIGN_OR_RETURN(const GgufTensor* t, Get(name, {cols, rows}));
    return View(*t, t->data, rows, cols);
  }

  // Expert e of a stacked [experts, rows, cols] tensor (ggml dims [cols, rows, experts]).
  absl::StatusOr<WeightView> Expert(const std::string& name, int64_t experts, int64_t e,
                                    int64_t rows, int64_t cols) {
    DSV2_ASSIGN_OR_RETURN(const GgufTensor* t, Get(name, {cols, rows, experts}));
    const auto* base = static_cast<const uint8_t*>(t->data);
    return View(*t, base + e * rows * RowBytes(*t->dtype, cols), rows, cols);
  }

  // A float vector (norm scales) converted to float32 in host storage.
  absl::StatusOr<const float*> Vector(const std::string& name, int64_t n) {
    DSV2_ASSIGN_OR_RETURN(const GgufTensor* t, Get(name, {n}));
    std::vector<uint8_t>& bytes = w_.host_storage.emplace_back(n * sizeof(float));
    DequantizeRow(*t->dtype, t->data, reinterpret_cast<float*>(bytes.data()), n);
    return reinterpret_cast<const float*>(bytes.data());
  }

 private:
  static WeightView View(const GgufTensor& t, const void* data, int64_t rows, int64_t cols) {
    return WeightView{
        .data = data, .dtype = *t.dtype, .rows = rows, .cols = cols, .row_stride = cols};
  }

  const GgufModel& g_;
  ModelWeights& w_;
};

absl::Status BindAttention(const ModelConfig& c, const std::string& p, GgufBinder& b,
                           ModelWeights& w, AttentionWeights& a) {
  const int64_t heads = c.num_attention_heads, hidden = c.hidden_size;
  const int64_t nope = c.qk_nope_head_dim, v = c.v_head_dim, r = c.kv_lora_rank;
  if (c.q_lora_rank) {
    DSV2_ASSIGN_OR_RETURN(a.q_a_proj, b.Matrix(p + "attn_q_a.weight", *c.q_lora_rank, hidden));
    DSV2_ASSIGN_OR_RETURN(a.q_a_norm, b.Vector(p + "attn_q_a_norm.weight", *c.q_lora_rank));
    DSV2_ASSIGN_OR_RETURN(a.q_b_proj,
                          b.Matrix(p + "attn_q_b.weight", heads * c.qk_head_dim(), *c.q_lora_rank));
  } else {
    DSV2_ASSIGN_OR_RETURN(a.q_proj, b.Matrix(p + "attn_q.weight", heads * c.qk_head_dim(), hidden));
  }
  DSV2_ASSIGN_OR_RETURN(a.kv_a_proj,
                        b.Matrix(p + "attn_kv_a_mqa.weight", r + c.qk_rope_head_dim, hidden));
  DSV2_ASSIGN_OR_RETURN(a.kv_a_norm, b.Vector(p + "attn_kv_a_norm.weight", r));
  DSV2_ASSIGN_OR_RETURN(a.o_proj, b.Matrix(p + "attn_output.weight", hidden, heads * v));
  if (b.Has(p + "attn_kv_b.weight")) {  // the older layout
    DSV2_ASSIGN_OR_RETURN(const WeightView kv_b,
                          b.Matrix(p + "attn_kv_b.weight", heads * (nope + v), r));
    return SplitKvB(kv_b, heads, nope, v, w, a);
  }
  // attn_k_b: [heads, r, nope] = W_UKᵀ per head; attn_v_b: [heads, v, r] = W_UV per head.
  DSV2_ASSIGN_OR_RETURN(const GgufTensor* k_b, b.Get(p + "attn_k_b.weight", {nope, r, heads}));
  DSV2_ASSIGN_OR_RETURN(const GgufTensor* v_b, b.Get(p + "attn_v_b.weight", {r, v, heads}));
  a.w_uk_t = {
      .data = k_b->data, .dtype = *k_b->dtype, .rows = heads * r, .cols = nope, .row_stride = nope};
  a.w_uv = {.data = v_b->data, .dtype = *v_b->dtype, .rows = heads * v, .cols = r, .row_stride = r};
  return absl::OkStatus();
}

absl::StatusOr<MlpWeights> Mlp(GgufBinder& b, const std::string& p, const std::string& suffix,
                               int64_t width, int64_t hidden) {
  MlpWeights m;
  DSV2_ASSIGN_OR_RETURN(m.gate, b.Matrix(p + "ffn_gate" + suffix + ".weight", width, hidden));
  DSV2_ASSIGN_OR_RETURN(m.up, b.Matrix(p + "ffn_up" + suffix + ".weight", width, hidden));
  DSV2_ASSIGN_OR_RETURN(m.down, b.Matrix(p + "ffn_down" + suffix + ".weight", hidden, width));
  return m;
}

}  // namespace

absl::StatusOr<ModelWeights> BindGgufWeights(const ModelConfig& c, const GgufModel& g,
                                             const WeightBindOptions& options) {
  ModelWeights w;
  GgufBinder b(g, w);
  const int64_t hidden = c.hidden_size, experts = c.n_routed_experts;
  DSV2_ASSIGN_OR_RETURN(w.embed, b.Matrix("token_embd.weight", c.vocab_size, hidden));
  const int64_t expert_end = options.expert_end < 0 ? experts : options.expert_end;
  if (options.expert_begin < 0 || options.expert_begin > expert_end || expert_end > experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert range [", options.expert_begin, ", ",
                                                   expert_end, ") is outside [0, ", experts, ")"));
  }
  w.layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string p = absl::StrCat("blk.", l, ".");
    DSV2_ASSIGN_OR_RETURN(L.input_norm, b.Vector(p + "attn_norm.weight", hidden));
    DSV2_ASSIGN_OR_RETURN(L.post_attention_norm, b.Vector(p + "ffn_norm.weight", hidden));
    DSV2_RETURN_IF_ERROR(BindAttention(c, p, b, w, L.attn));
    L.is_moe = c.IsMoeLayer(l);
    if (!L.is_moe) {
      DSV2_ASSIGN_OR_RETURN(L.mlp, Mlp(b, p, "", c.intermediate_size, hidden));
      continue;
    }
    MoeWeights& m = L.moe;
    DSV2_ASSIGN_OR_RETURN(m.router, b.Matrix(p + "ffn_gate_inp.weight", experts, hidden));
    m.expert_begin = options.expert_begin;
    const int64_t width = c.moe_intermediate_size;
    for (int64_t e = options.expert_begin; e < expert_end; ++e) {
      MlpWeights ew;
      DSV2_ASSIGN_OR_RETURN(ew.gate,
                            b.Expert(p + "ffn_gate_exps.weight", experts, e, width, hidden));
      DSV2_ASSIGN_OR_RETURN(ew.up, b.Expert(p + "ffn_up_exps.weight", experts, e, width, hidden));
      DSV2_ASSIGN_OR_RETURN(ew.down,
                            b.Expert(p + "ffn_down_exps.weight", experts, e, hidden, width));
      m.experts.push_back(ew);
    }
    m.has_shared = c.n_shared_experts > 0;
    if (m.has_shared) {
      DSV2_ASSIGN_OR_RETURN(m.shared, Mlp(b, p, "_shexp", c.n_shared_experts * width, hidden));
    }
  }
  DSV2_ASSIGN_OR_RETURN(w.final_norm, b.Vector("output_norm.weight", hidden));
  if (g.FindTensor("output.weight") == nullptr) {
    w.lm_head = w.embed;
  } else {
    DSV2_ASSIGN_OR_RETURN(w.lm_head, b.Matrix("output.weight", c.vocab_size, hidden));
  }
  return w;
}

}  // namespace dsv2
