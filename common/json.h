// A small JSON reader for config.json, safetensors headers and tokenizer.json.
// Parse errors report the byte offset, line and column of the first problem.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv2 {

class JsonValue {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<JsonValue>;
  using Object = std::map<std::string, JsonValue, std::less<>>;

  JsonValue() = default;
  static JsonValue Bool(bool b);
  static JsonValue Number(double d, bool is_integer);
  static JsonValue String(std::string s);
  static JsonValue MakeArray(Array a);
  static JsonValue MakeObject(Object o);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_integer() const { return kind_ == Kind::kNumber && is_integer_; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  bool as_bool() const { return bool_; }
  double as_double() const { return number_; }
  // Meaningful when is_integer() (in int64 range); anything else is clamped, never UB.
  int64_t as_int() const {
    return number_ >= 0x1p63   ? INT64_MAX
           : number_ < -0x1p63 ? INT64_MIN
                               : static_cast<int64_t>(number_);
  }
  const std::string& as_string() const { return string_; }
  const Array& as_array() const { return *array_; }
  const Object& as_object() const { return *object_; }

  // Object member or nullptr when absent (or when this is not an object).
  const JsonValue* Find(std::string_view key) const;

  static const char* KindName(Kind k);

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool is_integer_ = false;
  double number_ = 0;
  std::string string_;
  std::shared_ptr<const Array> array_;
  std::shared_ptr<const Object> object_;
};

// Parses one JSON document; trailing non-space text is an error.
absl::StatusOr<JsonValue> ParseJson(std::string_view text);

// Reads and parses a file; errors name the file.
absl::StatusOr<JsonValue> ParseJsonFile(const std::string& path);

}  // namespace dsv2
