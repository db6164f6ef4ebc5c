// A DeepSeek-V2-family ModelConfig from a GGUF file's keys (architecture "deepseek2", as
// llama.cpp's converter writes them). A missing key is an error naming it; so is one that
// contradicts another (MLA head sizes) or the tensors. Two facts GGUF does not keep exactly:
// YaRN's mscale_all_dim is stored as 0.1·mscale_all_dim in float32 (read back to ~1e-8), and
// mscale is not stored: taken equal to mscale_all_dim, as every DeepSeek-V2 config has it.
#pragma once

#include "absl/status/statusor.h"
#include "common/gguf.h"
#include "common/model_config.h"

namespace dsv2 {

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufModel& gguf);

// The config of a model given as --model: a checkpoint directory's config.json, or a GGUF
// file's keys.
absl::StatusOr<ModelConfig> LoadAnyModelConfig(const std::string& model);

}  // namespace dsv2
