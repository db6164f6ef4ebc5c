// A fingerprint of a checkpoint that the coordinator and every worker compute independently
// and compare before serving together: config.json's parsed values, every tensor's name, dtype
// and shape, and the first and last bytes of every tensor's data (not the whole 31 GB: a few
// bytes per tensor are enough to tell different checkpoints and different files apart).
#pragma once

#include <string>

#include "common/gguf.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace dsv2 {

// 16 hex digits.
std::string CheckpointFingerprint(const ModelConfig& config, const Checkpoint& ckpt);
// The same over a GGUF model: its config, every tensor's name, ggml type and dims, and the first
// and last bytes of its data.
std::string GgufFingerprint(const ModelConfig& config, const GgufModel& gguf);

}  // namespace dsv2
