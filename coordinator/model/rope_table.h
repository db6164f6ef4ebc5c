// Rotary frequencies of a DeepSeek-V2 model: plain RoPE, or YaRN when config.json has
// rope_scaling {type: yarn} (REFERENCE.md §3 "YaRN rotary frequencies").
#pragma once

#include <vector>

#include "common/model_config.h"

namespace dsv2 {

struct RopeTable {
  std::vector<float> inv_freq;  // [qk_rope_head_dim / 2]: θ_i
  float attn_factor = 1.0f;     // multiplies cos and sin

  static RopeTable FromConfig(const ModelConfig& config);
};

}  // namespace dsv2
