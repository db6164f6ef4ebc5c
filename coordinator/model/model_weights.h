// The weights of a DeepSeek-V2-family model, bound by name (REFERENCE.md §2) to tensors of an
// mmap'ed checkpoint. Large matrices stay where they are in the file (WeightView); only the
// small norm vectors are converted to float32, and kv_b_proj is split into the two per-head
// operands of the absorbed attention: W_UK transposed and W_UV (GGUF files hold them split
// already). Those live in `host_storage`. UploadModelWeights (model_weights_upload.h) makes the
// same structure over device memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/gated_mlp.h"
#include "common/mapped_pages.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "kernels/device_buffer.h"
#include "kernels/mlp_weights.h"
#include "kernels/weight_view.h"

namespace dsv2 {

struct AttentionWeights {
  WeightView q_proj;                 // [heads·qk_head_dim, hidden]     (q_lora_rank null)
  WeightView q_a_proj;               // [q_lora_rank, hidden]           (q_lora_rank set)
  const float* q_a_norm = nullptr;   // [q_lora_rank] float32
  WeightView q_b_proj;               // [heads·qk_head_dim, q_lora_rank]
  WeightView kv_a_proj;              // [kv_lora_rank + rope_dim, hidden]
  const float* kv_a_norm = nullptr;  // [kv_lora_rank] float32
  WeightView w_uk_t;                 // [heads · kv_lora_rank, nope]: W_UK per head, transposed
  WeightView w_uv;                   // [heads · v, kv_lora_rank]: W_UV per head
  WeightView o_proj;                 // [hidden, heads·v]

  // W_UKᵀ of head h as a [kv_lora_rank, nope] weight: q_lat = q_nope · W_UK.
  WeightView WUkT(int64_t h, int64_t kv_lora_rank) const;
  // W_UV of head h as a [v, kv_lora_rank] weight: o = W_UV · o_lat.
  WeightView WUv(int64_t h, int64_t v) const;
};

struct MoeWeights {
  WeightView router;                // [n_routed_experts, hidden]
  int64_t expert_begin = 0;         // the experts bound here: [expert_begin, expert_end)
  std::vector<MlpWeights> experts;  // experts[e - expert_begin]
  bool has_shared = false;
  MlpWeights shared;  // width n_shared · moe_intermediate_size
};

struct LayerWeights {
  const float* input_norm = nullptr;           // [hidden] float32
  const float* post_attention_norm = nullptr;  // [hidden] float32
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct ModelWeights {
  WeightView embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  const float* final_norm = nullptr;  // [hidden] float32
  WeightView lm_head;                 // [vocab, hidden]

  // Host memory behind the norm vectors and W_UKᵀ (the rest is the checkpoint's mmap). Inner
  // vectors never change size, so their data pointers survive moves of this structure.
  std::vector<std::vector<uint8_t>> host_storage;
  // Device memory behind every view, when the weights were uploaded to a GPU.
  std::vector<DeviceBuffer> device_storage;
};

// kv_b_proj [heads·(nope + v), r] split into a.w_uk_t and a.w_uv (copies in w.host_storage).
absl::Status SplitKvB(const WeightView& kv_b, int64_t heads, int64_t nope, int64_t v,
                      ModelWeights& w, AttentionWeights& a);

// Where every matrix of `w` lies in memory (the mmap'ed file, or host_storage): what
// DeepseekV2Model::Load maps ahead of use.
std::vector<ByteRange> WeightRanges(const ModelWeights& w);

struct WeightBindOptions {
  // Routed experts to bind; [0, n_routed_experts) by default (standalone).
  int64_t expert_begin = 0;
  int64_t expert_end = -1;
};

// Checks that every expected tensor exists with the expected shape and a float dtype; errors
// name the tensor, the file and what was expected.
absl::StatusOr<ModelWeights> BindModelWeights(const ModelConfig& config, const Checkpoint& ckpt,
                                              const WeightBindOptions& options = {});

}  // namespace dsv2
