// UTF-8 helpers shared by the JSON reader, the tokenizer and the stop matcher: validation, code
// point decoding and the lossy conversion that Rust's String::from_utf8_lossy (and so Hugging Face
// tokenizers' decoders) performs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace dsv2 {

// Length of the valid UTF-8 sequence that starts at s[i], or 0 when the bytes there are not one
// (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t ValidSequenceLength(std::string_view s, size_t i);

// OK, or INVALID_ARGUMENT naming the byte offset of the first invalid sequence.
absl::Status ValidateUtf8(std::string_view s);

// Decodes the code point of a valid sequence at s[i] and advances i past it.
uint32_t DecodeCodePoint(std::string_view s, size_t& i);

void AppendUtf8(uint32_t cp, std::string& out);

// Appends `bytes` to `out`, replacing each maximal invalid subpart with U+FFFD.
void AppendLossy(std::string_view bytes, std::string& out);

// How many leading bytes of `bytes` can be converted now without knowing what follows: all of
// them, except a trailing incomplete (but so far valid) sequence that later bytes may finish.
size_t CompletePrefixLength(std::string_view bytes);

}  // namespace dsv2
