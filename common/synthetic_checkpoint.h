// Writes a random DeepSeek-V2-family checkpoint in the Hugging Face layout (config.json,
// sharded *.safetensors with model.safetensors.index.json, bf16 weights as REFERENCE.md §2
// names them). Used by the benchmarks and tests (the built-in demo model is a trained one:
// assets/demo-model). The weights are
// deterministic for a seed and carry no meaning.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace dsv2 {

struct SyntheticCheckpointOptions {
  uint64_t seed = 1234;
  int num_shards = 4;
  // Called after each tensor with (bytes written, bytes total).
  std::function<void(int64_t, int64_t)> progress;
};

// Writes `config` (every field) as config.json and random weights of its shapes into `dir`.
absl::Status WriteSyntheticCheckpoint(const ModelConfig& config, const std::string& dir,
                                      const SyntheticCheckpointOptions& options);

// A small model of the DeepSeek-V2 family (MLA, yarn, 1 dense + 3 MoE layers, 16 routed and
// 2 shared experts, top-6, V2's vocabulary size), ~0.2 GB in bf16: dsv2-make-checkpoint
// --preset small, for smoke tests and rehearsals.
ModelConfig SmallModelConfig();

// config.json text for a ModelConfig (original Hugging Face spelling).
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace dsv2
