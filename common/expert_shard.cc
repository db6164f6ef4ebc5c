#include "common/expert_shard.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/weight_binder.h"
#include "kernels/cast_rows.h"
#include "kernels/routed_experts.h"

namespace dsv2 {

absl::StatusOr<ExpertShard> BindExpertShard(const ModelConfig& c, const Checkpoint& ckpt,
                                            int64_t begin, int64_t end) {
  if (begin < 0 || begin > end || end > c.n_routed_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert range [", begin, ", ", end,
                                                   ") is outside [0, ", c.n_routed_experts, ")"));
  }
  WeightBinder b(ckpt);
  ExpertShard shard;
  shard.begin = begin;
  shard.end = end;
  shard.layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!c.IsMoeLayer(l)) continue;
    for (int64_t e = begin; e < end; ++e) {
      DSV2_ASSIGN_OR_RETURN(MlpWeights w,
                            b.Mlp(absl::StrCat("model.layers.", l, ".mlp.experts.", e),
                                  c.moe_intermediate_size, c.hidden_size));
      shard.layers[l].push_back(w);
    }
  }
  shard.bytes = b.bytes();
  return shard;
}

absl::StatusOr<ExpertShard> BindGgufExpertShard(const ModelConfig& c, const GgufModel& g,
                                                int64_t begin, int64_t end) {
  if (begin < 0 || begin > end || end > c.n_routed_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert range [", begin, ", ", end,
                                                   ") is outside [0, ", c.n_routed_experts, ")"));
  }
  const int64_t experts = c.n_routed_experts, width = c.moe_intermediate_size;
  const int64_t hidden = c.hidden_size;
  ExpertShard shard;
  shard.begin = begin;
  shard.end = end;
  shard.layers.resize(c.num_hidden_layers);
  // Expert e of a stacked [experts, rows, cols] tensor (ggml dims [cols, rows, experts]).
  auto expert = [&](const std::string& name, int64_t e, int64_t rows,
                    int64_t cols) -> absl::StatusOr<WeightView> {
    const GgufTensor* t = g.FindTensor(name);
    if (t == nullptr) {
      return absl::NotFoundError(
          absl::StrCat(g.first().path(), ": tensor '", name, "' is missing"));
    }
    if (t->dims != std::vector<int64_t>{cols, rows, experts} || !t->dtype || t->data == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          t->file, ": tensor '", name, "' is ", GgmlTypeName(t->ggml_type), " ", t->ShapeString(),
          ", expected [", cols, ", ", rows, ", ", experts, "] of a type this server reads"));
    }
    const int64_t each = rows * RowBytes(*t->dtype, cols);
    shard.bytes += each;
    return WeightView{.data = static_cast<const uint8_t*>(t->data) + e * each,
                      .dtype = *t->dtype,
                      .rows = rows,
                      .cols = cols,
                      .row_stride = cols};
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!c.IsMoeLayer(l)) continue;
    const std::string p = absl::StrCat("blk.", l, ".ffn_");
    for (int64_t e = begin; e < end; ++e) {
      MlpWeights w;
      DSV2_ASSIGN_OR_RETURN(w.gate, expert(p + "gate_exps.weight", e, width, hidden));
      DSV2_ASSIGN_OR_RETURN(w.up, expert(p + "up_exps.weight", e, width, hidden));
      DSV2_ASSIGN_OR_RETURN(w.down, expert(p + "down_exps.weight", e, hidden, width));
      shard.layers[l].push_back(w);
    }
  }
  return shard;
}

void RoutedExpertsForward(const CpuContext& ctx, const std::vector<MlpWeights>& experts,
                          int64_t expert_begin, const ExpertAssignments& a, const float* x,
                          int64_t hidden, float* out) {
  RoutedExpertsArgs args{.experts = experts.data(),
                         .n_local = static_cast<int64_t>(experts.size()),
                         .expert_begin = expert_begin,
                         .expert = a.expert,
                         .weight = a.weight,
                         .n_tokens = a.n_tokens,
                         .top_k = a.top_k,
                         .hidden = hidden,
                         .x = x,
                         .out = out,
                         .accumulate = true};
  if (ctx.act_dtype() == DType::kF32) return cpu::RoutedExperts(ctx, args);
  const int64_t rows = a.n_tokens * hidden;
  std::vector<uint16_t> x_act(rows), partial(rows);  // bfloat16 bits
  cpu::CastRows(ctx, {.x = x, .y = x_act.data(), .y_dtype = DType::kBF16, .n = rows});
  args.x = x_act.data();
  args.out = partial.data();
  args.accumulate = false;
  cpu::RoutedExperts(ctx, args);
  cpu::CastRows(ctx,
                {.x = partial.data(), .x_dtype = DType::kBF16, .add = out, .y = out, .n = rows});
}

}  // namespace dsv2
