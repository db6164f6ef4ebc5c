// ExpertShard: the routed experts [begin, end) of every MoE layer, bound in place from the
// checkpoint — what a worker hosts (memory proportional to its shard: only these experts'
// pages are ever touched) and what the standalone model uses with the full range.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/gated_mlp.h"
#include "common/gguf.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

struct ExpertShard {
  int64_t begin = 0;  // first routed expert hosted
  int64_t end = 0;    // one past the last
  // layers[l][e - begin]; empty for dense layers.
  std::vector<std::vector<MlpWeights>> layers;
  int64_t bytes = 0;  // checkpoint bytes of the bound experts
};

absl::StatusOr<ExpertShard> BindExpertShard(const ModelConfig& config, const Checkpoint& ckpt,
                                            int64_t begin, int64_t end);
// The same from a deepseek2 GGUF file's stacked expert tensors (blk.N.ffn_*_exps.weight).
absl::StatusOr<ExpertShard> BindGgufExpertShard(const ModelConfig& config, const GgufModel& gguf,
                                                int64_t begin, int64_t end);

// The routed experts each token selected: `top_k` slots per token of (global expert id,
// weight); a slot whose expert is outside the shard (or id < 0) is skipped.
struct ExpertAssignments {
  int64_t n_tokens = 0;
  int64_t top_k = 0;
  const int32_t* expert = nullptr;  // [n_tokens, top_k]
  const float* weight = nullptr;    // [n_tokens, top_k]
};

// out[t] += Σ_k weight[t,k] · expert_{id[t,k]}(x[t]) over the experts in `experts` (which hold
// ids [expert_begin, expert_begin + size)), on the CPU: kernels/routed_experts.h. x and out are
// the data plane's float32 rows whatever the context's activation dtype; in bfloat16 x is
// rounded to bf16 (exact for rows the coordinator widened from bf16) and the shard's partial
// sum is rounded to bf16 before it is added, as a GPU worker's is.
void RoutedExpertsForward(const CpuContext& ctx, const std::vector<MlpWeights>& experts,
                          int64_t expert_begin, const ExpertAssignments& assignments,
                          const float* x, int64_t hidden, float* out);

}  // namespace dsv2
