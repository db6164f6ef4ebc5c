#include "coordinator/tokenizer/normalizer.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "coordinator/tokenizer/json_fields.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/unicode_tables.h"

namespace dsv2::tokenizer {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Normalize(std::string& text) const override {
    for (const auto& s : steps_) DSV2_RETURN_IF_ERROR(s->Normalize(text));
    return absl::OkStatus();
  }
  bool IsIdentity() const override {
    for (const auto& s : steps_) {
      if (!s->IsIdentity()) return false;
    }
    return true;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  absl::Status Normalize(std::string& text) const override {
    std::string out;
    size_t prev = 0;
    if (regex_ == nullptr) {
      if (literal_.empty()) return absl::OkStatus();
      for (size_t at = text.find(literal_); at != std::string::npos;
           at = text.find(literal_, prev)) {
        out.append(text, prev, at - prev);
        out += content_;
        prev = at + literal_.size();
      }
    } else {
      size_t pos = 0, b, e;
      while (pos <= text.size()) {
        const int rc = regex_->Find(text, pos, &b, &e);
        if (rc < 0) return regex_->FindError(rc);
        if (rc == 0) break;
        out.append(text, prev, b - prev);
        out += content_;
        prev = e;
        if (e == b) {  // empty match: step over one character
          if (e >= text.size()) break;
          pos = e + std::max<size_t>(1, ValidSequenceLength(text, e));
          out.append(text, e, pos - e);
          prev = pos;
        } else {
          pos = e;
        }
      }
    }
    out.append(text, prev, std::string::npos);
    text = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string& text) const override {
    size_t b = 0, e = text.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!IsWhiteSpace(DecodeCodePoint(text, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!IsWhiteSpace(DecodeCodePoint(text, i))) break;
        e = start;
      }
    }
    text = text.substr(b, e - b);
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const Json& json) {
  if (json.is_null()) return std::unique_ptr<Normalizer>();
  DSV2_ASSIGN_OR_RETURN(std::string type, TypeOf(json, "normalizer"));
  if (type == "Sequence") {
    DSV2_ASSIGN_OR_RETURN(const Json* items, ArrayField(json, "normalizers"));
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const Json& item : *items) {
      DSV2_ASSIGN_OR_RETURN(std::unique_ptr<Normalizer> step, MakeNormalizer(item));
      if (step) steps.push_back(std::move(step));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(steps)));
  }
  if (type == "Replace") {
    DSV2_ASSIGN_OR_RETURN(std::string content, StringField(json, "content"));
    DSV2_ASSIGN_OR_RETURN(SplitPatternSpec pattern, PatternField(json, "pattern"));
    std::unique_ptr<Regex> regex;
    if (pattern.is_regex) {
      DSV2_ASSIGN_OR_RETURN(regex, Regex::Compile(pattern.text));
    }
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(pattern.text, std::move(regex), std::move(content)));
  }
  if (type == "Prepend") {
    DSV2_ASSIGN_OR_RETURN(std::string prefix, StringField(json, "prepend"));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Strip") {
    DSV2_ASSIGN_OR_RETURN(bool left, BoolField(json, "strip_left", false));
    DSV2_ASSIGN_OR_RETURN(bool right, BoolField(json, "strip_right", false));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported normalizer type '", type, "'"));
}

}  // namespace dsv2::tokenizer
