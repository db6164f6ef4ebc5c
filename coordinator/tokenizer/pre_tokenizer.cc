#include "coordinator/tokenizer/pre_tokenizer.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "coordinator/tokenizer/json_fields.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/unicode_tables.h"

namespace dsv2::tokenizer {
namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<Behavior> ParseBehavior(const std::string& s) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown Split behavior '", s, "'"));
}

// Turns the (segment, is_match) stream of one span into pieces, as HF's split behaviors do.
class PieceSink {
 public:
  PieceSink(Behavior b, bool invert, std::vector<Span>& out) : b_(b), invert_(invert), out_(out) {}

  void Add(uint32_t begin, uint32_t end, bool is_match) {
    if (invert_) is_match = !is_match;
    switch (b_) {
      case Behavior::kRemoved:
        if (!is_match) Push(begin, end);
        break;
      case Behavior::kIsolated:
        Push(begin, end);
        break;
      case Behavior::kMergedWithPrevious:
        if (is_match && !prev_match_ && has_last_) {
          last_.end = end;
        } else {
          Push(begin, end);
        }
        break;
      case Behavior::kMergedWithNext:
        if (has_pending_) {
          if (!is_match) {
            Emit({pending_.begin, end});
            has_pending_ = false;
            break;
          }
          Emit(pending_);
        }
        if (is_match) {
          pending_ = {begin, end};
          has_pending_ = true;
        } else {
          Emit({begin, end});
          has_pending_ = false;
        }
        break;
      case Behavior::kContiguous:
        if (is_match == prev_match_ && has_last_) {
          last_.end = end;
        } else {
          Push(begin, end);
        }
        break;
    }
    prev_match_ = is_match;
  }

  void Finish() {
    if (has_pending_) Emit(pending_);
    if (has_last_) Emit(last_);
    has_pending_ = has_last_ = false;
  }

 private:
  void Push(uint32_t begin, uint32_t end) {
    if (has_last_) Emit(last_);
    last_ = {begin, end};
    has_last_ = true;
  }
  void Emit(Span s) {
    if (s.end > s.begin) out_.push_back(s);
  }

  Behavior b_;
  bool invert_;
  std::vector<Span>& out_;
  bool prev_match_ = false;
  bool has_last_ = false;
  Span last_{0, 0};
  bool has_pending_ = false;
  Span pending_{0, 0};
};

// Runs `regex` over each span like Oniguruma's find_iter: an empty match right after the
// previous match is skipped by one character.
absl::Status RegexSegments(const Regex& regex, const std::string& text, Span span,
                           PieceSink& sink) {
  const std::string_view sub(text.data() + span.begin, span.end - span.begin);
  size_t prev = 0, pos = 0, b = 0, e = 0;
  bool have_match_end = false;
  size_t last_match_end = 0;
  while (pos <= sub.size()) {
    const int rc = regex.Find(sub, pos, &b, &e);
    if (rc < 0) return regex.FindError(rc);
    if (rc == 0) break;
    if (b == e && have_match_end && last_match_end == e) {
      if (e >= sub.size()) break;
      pos = e + std::max<size_t>(1, ValidSequenceLength(sub, e));
      continue;
    }
    if (prev != b) sink.Add(span.begin + prev, span.begin + b, false);
    sink.Add(span.begin + b, span.begin + e, true);
    prev = e;
    last_match_end = e;
    have_match_end = true;
    pos = e;
  }
  if (prev != sub.size()) sink.Add(span.begin + prev, span.end, false);
  sink.Finish();
  return absl::OkStatus();
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, std::string literal, Behavior b, bool invert)
      : regex_(std::move(regex)), literal_(std::move(literal)), behavior_(b), invert_(invert) {}

  absl::Status Split(std::string& text, const std::vector<Span>& in,
                     std::vector<Span>& out) const override {
    for (const Span& span : in) {
      PieceSink sink(behavior_, invert_, out);
      if (regex_) {
        DSV2_RETURN_IF_ERROR(RegexSegments(*regex_, text, span, sink));
        continue;
      }
      const std::string_view sub(text.data() + span.begin, span.end - span.begin);
      size_t prev = 0;
      for (size_t at = sub.find(literal_); at != std::string_view::npos;
           at = sub.find(literal_, prev)) {
        if (at != prev) sink.Add(span.begin + prev, span.begin + at, false);
        prev = at + literal_.size();
        sink.Add(span.begin + at, span.begin + prev, true);
      }
      if (prev != sub.size()) sink.Add(span.begin + prev, span.end, false);
      sink.Finish();
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Regex> regex_;  // or a literal
  std::string literal_;
  Behavior behavior_;
  bool invert_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  absl::Status Split(std::string& text, const std::vector<Span>& in,
                     std::vector<Span>& out) const override {
    const std::string_view all(text);
    for (const Span& span : in) {
      PieceSink sink(individual_ ? Behavior::kIsolated : Behavior::kContiguous, false, out);
      size_t i = span.begin, run = span.begin;
      while (i < span.end) {
        const size_t at = i;
        const auto c = static_cast<unsigned char>(all[i]);
        bool numeric;
        if (c < 0x80) {
          numeric = c >= '0' && c <= '9';
          ++i;
        } else {
          numeric = IsNumeric(DecodeCodePoint(all, i));
        }
        if (!numeric) continue;
        if (run != at) sink.Add(run, at, false);
        sink.Add(at, i, true);
        run = i;
      }
      if (run != span.end) sink.Add(run, span.end, false);
      sink.Finish();
    }
    return absl::OkStatus();
  }

 private:
  bool individual_;
};

constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status Split(std::string& text, const std::vector<Span>& in,
                     std::vector<Span>& out) const override {
    for (Span span : in) {
      if (add_prefix_space_ && text[span.begin] != ' ') {
        const size_t start = text.size();
        std::string piece(1, ' ');
        piece.append(text, span.begin, span.end - span.begin);
        text += piece;
        span = {static_cast<uint32_t>(start), static_cast<uint32_t>(text.size())};
      }
      if (!regex_) {
        out.push_back(span);
        continue;
      }
      PieceSink sink(Behavior::kIsolated, false, out);
      DSV2_RETURN_IF_ERROR(RegexSegments(*regex_, text, span, sink));
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

absl::Status AddStep(const Json& json, PreTokenizerPipeline& p) {
  DSV2_ASSIGN_OR_RETURN(std::string type, TypeOf(json, "pre_tokenizer"));
  if (p.byte_level) {
    return absl::UnimplementedError(absl::StrCat(
        "pre_tokenizer '", type, "' after ByteLevel is not supported (ByteLevel must be last)"));
  }
  if (type == "Sequence") {
    DSV2_ASSIGN_OR_RETURN(const Json* items, ArrayField(json, "pretokenizers"));
    for (const Json& item : *items) DSV2_RETURN_IF_ERROR(AddStep(item, p));
    return absl::OkStatus();
  }
  if (type == "Split") {
    DSV2_ASSIGN_OR_RETURN(SplitPatternSpec pattern, PatternField(json, "pattern"));
    DSV2_ASSIGN_OR_RETURN(std::string behavior_name, StringField(json, "behavior"));
    DSV2_ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(behavior_name));
    DSV2_ASSIGN_OR_RETURN(bool invert, BoolField(json, "invert", false));
    std::unique_ptr<Regex> regex;
    if (pattern.is_regex) {
      DSV2_ASSIGN_OR_RETURN(regex, Regex::Compile(pattern.text));
    } else if (pattern.text.empty()) {
      return absl::InvalidArgumentError("Split with an empty String pattern");
    }
    p.steps.push_back(
        std::make_unique<SplitPreTokenizer>(std::move(regex), pattern.text, behavior, invert));
    return absl::OkStatus();
  }
  if (type == "Digits") {
    DSV2_ASSIGN_OR_RETURN(bool individual, BoolField(json, "individual_digits", false));
    p.steps.push_back(std::make_unique<DigitsPreTokenizer>(individual));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    DSV2_ASSIGN_OR_RETURN(bool prefix, BoolField(json, "add_prefix_space", true));
    DSV2_ASSIGN_OR_RETURN(bool use_regex, BoolField(json, "use_regex", true));
    std::unique_ptr<Regex> regex;
    if (use_regex) {
      DSV2_ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern));
    }
    p.steps.push_back(std::make_unique<ByteLevelPreTokenizer>(prefix, std::move(regex)));
    p.byte_level = true;
    return absl::OkStatus();
  }
  return absl::UnimplementedError(absl::StrCat("unsupported pre_tokenizer type '", type, "'"));
}

}  // namespace

absl::StatusOr<PreTokenizerPipeline> MakePreTokenizer(const Json& json) {
  PreTokenizerPipeline p;
  if (json.is_null()) return p;
  DSV2_RETURN_IF_ERROR(AddStep(json, p));
  return p;
}

}  // namespace dsv2::tokenizer
