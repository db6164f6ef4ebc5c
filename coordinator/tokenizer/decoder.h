// Decoders of tokenizer.json: ByteLevel (token text -> bytes through the byte alphabet; a token
// with a character outside the alphabet keeps its own UTF-8; the concatenation is converted
// lossily, invalid UTF-8 becoming U+FFFD), Sequence (of ByteLevel, or empty: plain
// concatenation), and none (HF joins the tokens with spaces). Any other type is a load error.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/json_document.h"

namespace dsv2::tokenizer {

struct DecoderSpec {
  bool byte_level = false;  // token bytes through the alphabet, then lossy UTF-8
  std::string separator;    // between tokens ("" or " ")
};

absl::StatusOr<DecoderSpec> MakeDecoder(const Json& json);

// The bytes one token contributes under `spec`.
std::string TokenBytes(const DecoderSpec& spec, const std::string& token);

}  // namespace dsv2::tokenizer
