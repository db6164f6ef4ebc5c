#include "coordinator/tokenizer/json_fields.h"

#include "absl/strings/str_cat.h"

namespace dsv2::tokenizer {
namespace {

absl::Status FieldError(std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("field '", std::string(key), "' ", std::string(what)));
}

}  // namespace

absl::StatusOr<std::string> TypeOf(const JsonValue& json, std::string_view what) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " must be an object"));
  }
  const JsonValue* t = json.Find("type");
  if (t == nullptr || !t->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " has no string 'type'"));
  }
  return t->as_string();
}

absl::StatusOr<std::string> StringField(const JsonValue& json, std::string_view key) {
  const JsonValue* v = json.Find(key);
  if (v == nullptr || !v->is_string()) return FieldError(key, "must be a string");
  return v->as_string();
}

absl::StatusOr<bool> BoolField(const JsonValue& json, std::string_view key, bool fallback) {
  const JsonValue* v = json.Find(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_bool()) return FieldError(key, "must be a boolean");
  return v->as_bool();
}

absl::StatusOr<int64_t> IntField(const JsonValue& json, std::string_view key) {
  const JsonValue* v = json.Find(key);
  if (v == nullptr || !v->is_integer()) return FieldError(key, "must be an integer");
  return v->as_int();
}

absl::StatusOr<const JsonValue::Array*> ArrayField(const JsonValue& json, std::string_view key) {
  const JsonValue* v = json.Find(key);
  if (v == nullptr || !v->is_array()) return FieldError(key, "must be an array");
  return &v->as_array();
}

absl::StatusOr<SplitPatternSpec> PatternField(const JsonValue& json, std::string_view key) {
  const JsonValue* v = json.Find(key);
  if (v == nullptr || !v->is_object()) {
    return FieldError(key, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  if (const JsonValue* s = v->Find("String"); s && s->is_string()) {
    return SplitPatternSpec{s->as_string(), false};
  }
  if (const JsonValue* r = v->Find("Regex"); r && r->is_string()) {
    return SplitPatternSpec{r->as_string(), true};
  }
  return FieldError(key, "must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace dsv2::tokenizer
