// Typed field access for the components of tokenizer.json; errors name the component and field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/json_document.h"

namespace dsv2::tokenizer {

// The "type" member of a component object; `what` names the component ("pre_tokenizer").
absl::StatusOr<std::string> TypeOf(const Json& json, std::string_view what);

absl::StatusOr<std::string> StringField(const Json& json, std::string_view key);
// A boolean member; `fallback` when it is absent or null.
absl::StatusOr<bool> BoolField(const Json& json, std::string_view key, bool fallback);
absl::StatusOr<int64_t> IntField(const Json& json, std::string_view key);
absl::StatusOr<const Json*> ArrayField(const Json& json, std::string_view key);

// A Split or Replace pattern: {"String": "..."} or {"Regex": "..."}.
struct SplitPatternSpec {
  std::string text;
  bool is_regex = false;
};
absl::StatusOr<SplitPatternSpec> PatternField(const Json& json, std::string_view key);

}  // namespace dsv2::tokenizer
