#include "coordinator/tokenizer/json_fields.h"

#include "absl/strings/str_cat.h"

namespace dsv2::tokenizer {
namespace {

absl::Status FieldError(std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("field '", std::string(key), "' ", std::string(what)));
}

}  // namespace

absl::StatusOr<std::string> TypeOf(const Json& json, std::string_view what) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " must be an object"));
  }
  const Json* t = JsonMember(json, "type");
  if (t == nullptr || !t->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " has no string 'type'"));
  }
  return t->get_ref<const std::string&>();
}

absl::StatusOr<std::string> StringField(const Json& json, std::string_view key) {
  const Json* v = JsonMember(json, key);
  if (v == nullptr || !v->is_string()) return FieldError(key, "must be a string");
  return v->get_ref<const std::string&>();
}

absl::StatusOr<bool> BoolField(const Json& json, std::string_view key, bool fallback) {
  const Json* v = JsonMember(json, key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_boolean()) return FieldError(key, "must be a boolean");
  return v->get<bool>();
}

absl::StatusOr<int64_t> IntField(const Json& json, std::string_view key) {
  const Json* v = JsonMember(json, key);
  if (v == nullptr || !IsJsonInteger(*v)) return FieldError(key, "must be an integer");
  return JsonInt(*v);
}

absl::StatusOr<const Json*> ArrayField(const Json& json, std::string_view key) {
  const Json* v = JsonMember(json, key);
  if (v == nullptr || !v->is_array()) return FieldError(key, "must be an array");
  return &*v;
}

absl::StatusOr<SplitPatternSpec> PatternField(const Json& json, std::string_view key) {
  const Json* v = JsonMember(json, key);
  if (v == nullptr || !v->is_object()) {
    return FieldError(key, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  if (const Json* s = JsonMember(*v, "String"); s && s->is_string()) {
    return SplitPatternSpec{s->get_ref<const std::string&>(), false};
  }
  if (const Json* r = JsonMember(*v, "Regex"); r && r->is_string()) {
    return SplitPatternSpec{r->get_ref<const std::string&>(), true};
  }
  return FieldError(key, "must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace dsv2::tokenizer
