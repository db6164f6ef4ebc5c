#include "coordinator/model/model_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/weight_binder.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {

WeightView AttentionWeights::WUkT(int64_t h, int64_t kv_lora_rank) const {
  return w_uk_t.RowSlice(h * kv_lora_rank, kv_lora_rank);
}

WeightView AttentionWeights::WUv(int64_t h, int64_t v) const { return w_uv.RowSlice(h * v, v); }

std::vector<ByteRange> WeightRanges(const ModelWeights& w) {
  std::vector<ByteRange> r;
  auto add = [&](const WeightView& v) {
    if (v.data != nullptr) r.push_back({v.data, v.bytes()});
  };
  auto add_mlp = [&](const MlpWeights& m) {
    add(m.gate);
    add(m.up);
    add(m.down);
  };
  add(w.embed);
  add(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const WeightView* v : {&l.attn.q_proj, &l.attn.q_a_proj, &l.attn.q_b_proj,
                                &l.attn.kv_a_proj, &l.attn.w_uk_t, &l.attn.w_uv, &l.attn.o_proj}) {
      add(*v);
    }
    if (!l.is_moe) {
      add_mlp(l.mlp);
      continue;
    }
    add(l.moe.router);
    for (const MlpWeights& e : l.moe.experts) add_mlp(e);
    if (l.moe.has_shared) add_mlp(l.moe.shared);
  }
  return r;
}

absl::Status SplitKvB(const WeightView& kv_b, int64_t heads, int64_t nope, int64_t v,
                      ModelWeights& w, AttentionWeights& a) {
  const int64_t r = kv_b.cols;
  // W_UV[h] = rows [h·(nope+v) + nope, (h+1)·(nope+v)): whole rows, copied as stored.
  const int64_t row_bytes = RowBytes(kv_b.dtype, r);
  std::vector<uint8_t>& w_uv = w.host_storage.emplace_back(heads * v * row_bytes);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < v; ++i) {
      std::memcpy(&w_uv[(h * v + i) * row_bytes], kv_b.RowPtr(h * (nope + v) + nope + i),
                  row_bytes);
    }
  }
  a.w_uv = {
      .data = w_uv.data(), .dtype = kv_b.dtype, .rows = heads * v, .cols = r, .row_stride = r};
  // W_UK[h] = rows [h·(nope+v), h·(nope+v) + nope): [nope, r]; stored [r, nope], element by
  // element (a block-quantized kv_b is dequantized to float32 for it).
  const bool quantized = kv_b.quantized();
  const DType t = quantized ? DType::kF32 : kv_b.dtype;
  const int64_t es = DTypeSize(t);
  std::vector<uint8_t>& w_uk_t = w.host_storage.emplace_back(heads * r * nope * es);
  std::vector<float> row(r);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < nope; ++i) {
      const uint8_t* src = kv_b.RowPtr(h * (nope + v) + i);
      if (quantized) DequantizeRow(kv_b.dtype, src, row.data(), r);
      for (int64_t j = 0; j < r; ++j) {
        uint8_t* dst = &w_uk_t[((h * r + j) * nope + i) * es];
        if (quantized) {
          std::memcpy(dst, &row[j], es);
        } else {
          std::memcpy(dst, src + j * es, es);
        }
      }
    }
  }
  a.w_uk_t = {
      .data = w_uk_t.data(), .dtype = t, .rows = heads * r, .cols = nope, .row_stride = nope};
  return absl::OkStatus();
}

namespace {

// Keeps `v` in w.host_storage and returns its float32 data.
const float* Keep(ModelWeights& w, const std::vector<float>& v) {
  std::vector<uint8_t>& bytes = w.host_storage.emplace_back(v.size() * sizeof(float));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return reinterpret_cast<const float*>(bytes.data());
}

absl::StatusOr<const float*> BindVector(ModelWeights& w, WeightBinder& b, const std::string& name,
                                        int64_t n) {
  DSV2_ASSIGN_OR_RETURN(const std::vector<float> v, b.Vector(name, n));
  return Keep(w, v);
}

absl::Status BindAttention(const ModelConfig& c, const std::string& p, WeightBinder& b,
                           ModelWeights& w, AttentionWeights& a) {
  const int64_t heads = c.num_attention_heads, hidden = c.hidden_size;
  const int64_t nope = c.qk_nope_head_dim, v = c.v_head_dim, r = c.kv_lora_rank;
  if (c.q_lora_rank) {
    DSV2_ASSIGN_OR_RETURN(a.q_a_proj, b.Matrix(p + "q_a_proj.weight", *c.q_lora_rank, hidden));
    DSV2_ASSIGN_OR_RETURN(a.q_a_norm, BindVector(w, b, p + "q_a_layernorm.weight", *c.q_lora_rank));
    DSV2_ASSIGN_OR_RETURN(a.q_b_proj,
                          b.Matrix(p + "q_b_proj.weight", heads * c.qk_head_dim(), *c.q_lora_rank));
  } else {
    DSV2_ASSIGN_OR_RETURN(a.q_proj, b.Matrix(p + "q_proj.weight", heads * c.qk_head_dim(), hidden));
  }
  DSV2_ASSIGN_OR_RETURN(a.kv_a_proj,
                        b.Matrix(p + "kv_a_proj_with_mqa.weight", r + c.qk_rope_head_dim, hidden));
  DSV2_ASSIGN_OR_RETURN(a.kv_a_norm, BindVector(w, b, p + "kv_a_layernorm.weight", r));
  DSV2_ASSIGN_OR_RETURN(const WeightView kv_b,
                        b.Matrix(p + "kv_b_proj.weight", heads * (nope + v), r));
  DSV2_ASSIGN_OR_RETURN(a.o_proj, b.Matrix(p + "o_proj.weight", hidden, heads * v));
  return SplitKvB(kv_b, heads, nope, v, w, a);
}

}  // namespace

absl::StatusOr<ModelWeights> BindModelWeights(const ModelConfig& c, const Checkpoint& ckpt,
                                              const WeightBindOptions& options) {
  WeightBinder b(ckpt);
  ModelWeights w;
  const int64_t hidden = c.hidden_size;
  DSV2_ASSIGN_OR_RETURN(w.embed, b.Matrix("model.embed_tokens.weight", c.vocab_size, hidden));
  const int64_t expert_end = options.expert_end < 0 ? c.n_routed_experts : options.expert_end;
  if (options.expert_begin < 0 || options.expert_begin > expert_end ||
      expert_end > c.n_routed_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert range [", options.expert_begin, ", ",
                                                   expert_end, ") is outside [0, ",
                                                   c.n_routed_experts, ")"));
  }
  w.layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    DSV2_ASSIGN_OR_RETURN(L.input_norm, BindVector(w, b, p + "input_layernorm.weight", hidden));
    DSV2_ASSIGN_OR_RETURN(L.post_attention_norm,
                          BindVector(w, b, p + "post_attention_layernorm.weight", hidden));
    DSV2_RETURN_IF_ERROR(BindAttention(c, p + "self_attn.", b, w, L.attn));
    L.is_moe = c.IsMoeLayer(l);
    if (!L.is_moe) {
      DSV2_ASSIGN_OR_RETURN(L.mlp, b.Mlp(p + "mlp", c.intermediate_size, hidden));
      continue;
    }
    MoeWeights& m = L.moe;
    DSV2_ASSIGN_OR_RETURN(m.router, b.Matrix(p + "mlp.gate.weight", c.n_routed_experts, hidden));
    m.expert_begin = options.expert_begin;
    for (int64_t e = options.expert_begin; e < expert_end; ++e) {
      DSV2_ASSIGN_OR_RETURN(MlpWeights ew, b.Mlp(absl::StrCat(p, "mlp.experts.", e),
                                                 c.moe_intermediate_size, hidden));
      m.experts.push_back(ew);
    }
    m.has_shared = c.n_shared_experts > 0;
    if (m.has_shared) {
      DSV2_ASSIGN_OR_RETURN(m.shared, b.Mlp(p + "mlp.shared_experts",
                                            c.n_shared_experts * c.moe_intermediate_size, hidden));
    }
  }
  DSV2_ASSIGN_OR_RETURN(w.final_norm, BindVector(w, b, "model.norm.weight", hidden));
  if (c.tie_word_embeddings && ckpt.Find("lm_head.weight") == nullptr) {
    w.lm_head = w.embed;
  } else {
    DSV2_ASSIGN_OR_RETURN(w.lm_head, b.Matrix("lm_head.weight", c.vocab_size, hidden));
  }
  return w;
}

}  // namespace dsv2
