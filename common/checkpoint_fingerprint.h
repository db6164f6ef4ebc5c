// A fingerprint of a checkpoint that the coordinator and every worker compute independently
// and compare before serving together: config.json's parsed values, every tensor's name, dtype
// and shape, and the first and last bytes of every tensor's data (not the whole 31 GB: a few
// bytes per tensor are enough to tell different checkpoints and different files apart).
#pragma once

#include <string>

#include "common/model_config.h"
#include "common/safetensors.h"

namespace dsv2 {

// 16 hex digits.
std::string CheckpointFingerprint(const ModelConfig& config, const Checkpoint& ckpt);

}  // namespace dsv2
