// A Hugging Face DeepSeek-V2 checkpoint (config.json, safetensors, tokenizer.json) written as a
// deepseek2 GGUF file as llama.cpp's converter lays one out — its keys, its tensor names, kv_b
// split into attn_k_b (W_UK per head, transposed) and attn_v_b, each layer's experts stacked in
// one 3-D tensor, norms and the router gate in float32 — with the matrices in the formats of a
// --quantize scheme (or bf16 without one). dsv2-quantize is its command line.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/gguf_writer.h"
#include "common/model_config.h"
#include "coordinator/model/quantize_weights.h"

namespace dsv2 {

struct GgufExportOptions {
  std::string model_dir;  // config.json, *.safetensors, tokenizer.json (+ tokenizer_config.json)
  std::string out;        // the .gguf file
  QuantScheme scheme;     // none: the matrices as stored (F32, F16, BF16)
  int threads = 0;        // quantizing threads (0: every core)
};

absl::Status ExportGguf(const GgufExportOptions& options);

// The tokenizer.ggml.* keys (and dsv2.tokenizer.pre_tokenizer, the exact pre-tokenizer) from
// dir/tokenizer.json and tokenizer_config.json; none, with a warning, without tokenizer.json.
absl::Status AddGgufTokenizer(const std::string& dir, const ModelConfig& config, GgufWriter& w);

}  // namespace dsv2
