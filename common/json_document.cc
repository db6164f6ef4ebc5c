#include "common/json_document.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

// "line L, column C (byte B)" of a byte offset, counting columns in bytes from 1.
std::string Where(std::string_view text, size_t byte) {
  byte = std::min(byte, text.size());
  const std::string_view before = text.substr(0, byte);
  const size_t line = 1 + std::count(before.begin(), before.end(), '\n');
  const size_t line_start = before.rfind('\n');
  const size_t column = byte - (line_start == std::string_view::npos ? 0 : line_start + 1) + 1;
  return absl::StrCat("line ", line, ", column ", column, " (byte ", byte, ")");
}

// The offset of the first '[' or '{' (outside strings) nested deeper than `limit`, or npos. One
// pass over a table of the bytes that matter; a string is skipped with memchr to its next quote
// (the bulk of a tokenizer.json).
size_t FirstTooDeep(std::string_view text, int limit) {
  enum : uint8_t { kOther, kQuote, kOpen, kClose };
  static constexpr std::array<uint8_t, 256> kKind = [] {
    std::array<uint8_t, 256> k{};
    k['"'] = kQuote;
    k['['] = k['{'] = kOpen;
    k[']'] = k['}'] = kClose;
    return k;
  }();
  const char* data = text.data();
  const size_t n = text.size();
  int depth = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t kind = kKind[static_cast<uint8_t>(data[i])];
    if (kind == kOther) continue;
    if (kind == kQuote) {  // to the closing quote: one preceded by an even number of backslashes
      const size_t content = i + 1;
      size_t from = content;
      for (;;) {
        const void* q = std::memchr(data + from, '"', n - from);
        if (q == nullptr) return std::string_view::npos;  // unterminated: the parse reports it
        const size_t quote = static_cast<const char*>(q) - data;
        size_t escapes = 0;
        while (quote - escapes > content && data[quote - escapes - 1] == '\\') ++escapes;
        from = quote + 1;
        if (escapes % 2 == 0) break;
      }
      i = from - 1;
    } else if (kind == kOpen) {
      if (++depth > limit) return i;
    } else if (depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

// A SAX consumer that keeps nothing but the first parse error (run only on a document that did
// not parse, to say where and why).
struct ParseErrorCatcher {
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const Json::string_t&) { return true; }
  bool string(Json::string_t&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(size_t) { return true; }
  bool key(Json::string_t&) { return true; }
  bool end_object() { return true; }
  bool start_array(size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& e) {
    byte = position;
    what = e.what();
    // "[json.exception.parse_error.101] parse error at line 2, column 13: syntax error while
    // parsing value - unexpected ','; ..." -> "syntax error while parsing value - ..."
    if (const size_t colon = what.find(": "); colon != std::string::npos) {
      what = what.substr(colon + 2);
    }
    return false;
  }
  size_t byte = 0;
  std::string what = "not valid JSON";
};

}  // namespace

absl::StatusOr<Json> ParseJson(std::string_view text) {
  if (const size_t deep = FirstTooDeep(text, kMaxJsonDepth); deep != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON: nesting deeper than ", kMaxJsonDepth, " at ", Where(text, deep)));
  }
  Json json = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) return json;
  ParseErrorCatcher catcher;
  Json::sax_parse(text, &catcher);
  // nlohmann's position is the byte after the offending token; point at its last byte.
  return absl::InvalidArgumentError(absl::StrCat(
      "JSON: ", catcher.what, " at ", Where(text, catcher.byte > 0 ? catcher.byte - 1 : 0)));
}

absl::StatusOr<Json> ParseJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  // One read into a string of the file's size (a stringstream would copy the text twice).
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::string text(size > 0 ? static_cast<size_t>(size) : 0, '\0');
  if (size < 0 || !in.read(text.data(), size)) {
    return absl::DataLossError(absl::StrCat("cannot read ", path));
  }
  absl::StatusOr<Json> v = ParseJson(text);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", v.status().message()));
  return v;
}

int64_t JsonInt(const Json& v) {
  if (v.is_number_unsigned()) {
    return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX));
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (!v.is_number()) return 0;
  const double d = v.get<double>();
  return d >= 0x1p63 ? INT64_MAX : d < -0x1p63 ? INT64_MIN : d != d ? 0 : static_cast<int64_t>(d);
}

}  // namespace dsv2
