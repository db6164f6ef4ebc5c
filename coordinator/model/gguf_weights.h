// The weights of a deepseek2 GGUF file (llama.cpp's tensor names) bound into ModelWeights, used
// in place from the mmap: blk.N.attn_q / attn_q_a(+_norm) / attn_q_b, attn_kv_a_mqa,
// attn_kv_a_norm, attn_k_b + attn_v_b (newer files) or attn_kv_b (older ones, split as a
// safetensors kv_b_proj is), attn_output, ffn_{gate,up,down} (dense), ffn_gate_inp (router),
// ffn_{gate,up,down}_exps (the experts stacked in one 3-D tensor), ffn_*_shexp, and
// token_embd, output_norm, output. Errors name the tensor, its file, and the shape (ggml order:
// innermost first) and types expected.
#pragma once

#include "absl/status/statusor.h"
#include "common/gguf.h"
#include "common/model_config.h"
#include "coordinator/model/model_weights.h"

namespace dsv2 {

absl::StatusOr<ModelWeights> BindGgufWeights(const ModelConfig& config, const GgufModel& gguf,
                                             const WeightBindOptions& options = {});

}  // namespace dsv2
