// JSON documents (config.json, safetensors headers, tokenizer.json, tokenizer_config.json) read
// with nlohmann::json, without exceptions: a document that does not parse is a Status naming the
// line, column and byte of the first problem.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace dsv2 {

using Json = nlohmann::json;

// Deeper nesting is refused: the parse itself does not recurse, but readers of a tokenizer.json
// (a Sequence of Sequences) do.
inline constexpr int kMaxJsonDepth = 256;

// Parses one JSON document; trailing non-space text, invalid UTF-8 in a string and nesting deeper
// than kMaxJsonDepth are errors.
absl::StatusOr<Json> ParseJson(std::string_view text);

// Reads and parses a file; errors name the file.
absl::StatusOr<Json> ParseJsonFile(const std::string& path);

// The member `key` of an object, or nullptr when it is absent or `object` is not an object.
inline const Json* JsonMember(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// An integer literal within int64. One beyond it (1e30 written out) is a number but not an
// integer: readers that want an integer refuse it by name instead of converting out of range
// (found by scripts/fuzz.sh config_json; tests/fuzz/regressions/config_json/).
inline bool IsJsonInteger(const Json& v) {
  return v.is_number_integer() &&
         (!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
}

// The value of a number as int64: meaningful when IsJsonInteger(v); anything else is clamped
// (a fraction truncated, a non-number 0), never undefined.
int64_t JsonInt(const Json& v);

}  // namespace dsv2
