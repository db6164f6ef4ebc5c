#include "coordinator/model/model_weights_upload.h"

#include "common/status_macros.h"
#include "common/weight_uploader.h"

namespace dsv2 {
namespace {

int64_t ModelHostBytes(const ModelWeights& h) {
  int64_t b = HostBytes(h.embed) + (h.lm_head.data != h.embed.data ? HostBytes(h.lm_head) : 0);
  for (const LayerWeights& L : h.layers) {
    const AttentionWeights& a = L.attn;
    b += HostBytes(a.q_proj) + HostBytes(a.q_a_proj) + HostBytes(a.q_b_proj) +
         HostBytes(a.kv_a_proj) + HostBytes(a.w_uv) + HostBytes(a.w_uk_t) + HostBytes(a.o_proj);
    b += L.is_moe ? HostBytes(L.moe.router) + (L.moe.has_shared ? HostBytes(L.moe.shared) : 0)
                  : HostBytes(L.mlp);
    for (const MlpWeights& e : L.moe.experts) b += HostBytes(e);
  }
  return b;
}

}  // namespace

absl::StatusOr<ModelWeights> UploadModelWeights(const ModelConfig& c, const ModelWeights& h,
                                                CudaContext& cuda) {
  const DType to = cuda.act_dtype();
  ModelWeights d;
  WeightUploader up(cuda, "weights", ModelHostBytes(h), &d.device_storage);
  DSV2_RETURN_IF_ERROR(up.Init());
  auto matrix = [&](const WeightView& src) { return up.NewMatrix(src, to); };
  auto mlp = [&](const MlpWeights& src, MlpWeights& dst) -> absl::Status {
    DSV2_ASSIGN_OR_RETURN(dst.gate, matrix(src.gate));
    DSV2_ASSIGN_OR_RETURN(dst.up, matrix(src.up));
    DSV2_ASSIGN_OR_RETURN(dst.down, matrix(src.down));
    return absl::OkStatus();
  };
  DSV2_ASSIGN_OR_RETURN(d.embed, matrix(h.embed));
  d.layers.resize(h.layers.size());
  for (size_t l = 0; l < h.layers.size(); ++l) {
    const LayerWeights& hl = h.layers[l];
    LayerWeights& dl = d.layers[l];
    DSV2_ASSIGN_OR_RETURN(dl.input_norm, up.Vector(hl.input_norm, c.hidden_size));
    DSV2_ASSIGN_OR_RETURN(dl.post_attention_norm, up.Vector(hl.post_attention_norm, c.hidden_size));
    const AttentionWeights& ha = hl.attn;
    AttentionWeights& da = dl.attn;
    DSV2_ASSIGN_OR_RETURN(da.q_proj, matrix(ha.q_proj));
    DSV2_ASSIGN_OR_RETURN(da.q_a_proj, matrix(ha.q_a_proj));
    DSV2_ASSIGN_OR_RETURN(da.q_a_norm, up.Vector(ha.q_a_norm, c.q_lora_rank.value_or(0)));
    DSV2_ASSIGN_OR_RETURN(da.q_b_proj, matrix(ha.q_b_proj));
    DSV2_ASSIGN_OR_RETURN(da.kv_a_proj, matrix(ha.kv_a_proj));
    DSV2_ASSIGN_OR_RETURN(da.kv_a_norm, up.Vector(ha.kv_a_norm, c.kv_lora_rank));
    DSV2_ASSIGN_OR_RETURN(da.w_uv, matrix(ha.w_uv));
    DSV2_ASSIGN_OR_RETURN(da.w_uk_t, matrix(ha.w_uk_t));
    DSV2_ASSIGN_OR_RETURN(da.o_proj, matrix(ha.o_proj));
    dl.is_moe = hl.is_moe;
    if (!hl.is_moe) {
      DSV2_RETURN_IF_ERROR(mlp(hl.mlp, dl.mlp));
      continue;
    }
    const MoeWeights& hm = hl.moe;
    MoeWeights& dm = dl.moe;
    DSV2_ASSIGN_OR_RETURN(dm.router, matrix(hm.router));
    dm.expert_begin = hm.expert_begin;
    for (WeightView MlpWeights::*kind : {&MlpWeights::gate, &MlpWeights::up, &MlpWeights::down}) {
      DSV2_RETURN_IF_ERROR(up.Experts(to, hm.experts, dm.experts, kind));
    }
    dm.has_shared = hm.has_shared;
    if (hm.has_shared) DSV2_RETURN_IF_ERROR(mlp(hm.shared, dm.shared));
  }
  DSV2_ASSIGN_OR_RETURN(d.final_norm, up.Vector(h.final_norm, c.hidden_size));
  if (h.lm_head.data == h.embed.data) {
    d.lm_head = d.embed;
  } else {
    DSV2_ASSIGN_OR_RETURN(d.lm_head, matrix(h.lm_head));
  }
  DSV2_RETURN_IF_ERROR(up.Finish());
  return d;
}

}  // namespace dsv2
