// A Tokenizer from a GGUF file's tokenizer keys (tokenizer.ggml.*), for a GGUF model without a
// tokenizer.json beside it: the BPE vocabulary and merges, the control and user-defined tokens,
// BOS/EOS and whether they are added, the chat template, and the pre-tokenizer — written out
// by dsv2-quantize (dsv2.tokenizer.pre_tokenizer), or known by its llama.cpp name
// (common/gguf_pre_tokenizers.h). Another pre-tokenizer is refused by name. A llama.cpp file
// does not keep added tokens' lstrip / rstrip / single_word flags (dsv2-quantize writes them in
// dsv2.tokenizer.added_tokens): without them those tokens match as plain text.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/gguf.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace dsv2 {

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromGguf(const GgufModel& gguf);

// The tokenizer of a --model: tokenizer.json in its directory (a checkpoint's, or beside a GGUF
// file), else a GGUF file's own keys; NOT_FOUND when neither exists.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(const std::string& model);

}  // namespace dsv2
