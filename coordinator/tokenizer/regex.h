// The regex engine of the tokenizer: PCRE2 (UTF, UCP, JIT) running the patterns of
// tokenizer.json, which were written for Oniguruma (the engine of Hugging Face tokenizers).
// TranslatePattern rewrites the constructs whose meaning differs between the two: \s, \d, \w,
// \h, \p{..} (Oniguruma follows a newer Unicode version; the missing code points are added as
// explicit ranges), \uHHHH, and ^/$ (line anchors in Oniguruma's Ruby syntax).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsv2::tokenizer {

// The PCRE2 pattern with the meaning `onig_pattern` has in Oniguruma; INVALID_ARGUMENT for
// constructs PCRE2 cannot express (nested classes, class intersection).
absl::StatusOr<std::string> TranslatePattern(std::string_view onig_pattern);

class Regex {
 public:
  // Translates and compiles; errors quote the pattern and PCRE2's message with its offset.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view onig_pattern);
  // Compiles a PCRE2 pattern as is (no translation).
  static absl::StatusOr<std::unique_ptr<Regex>> CompilePcre(std::string_view pcre_pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Searches valid UTF-8 `subject` from byte `start` (a code point boundary). Lookarounds see
  // the whole subject and nothing outside it. Returns 1 with [*begin, *end) on a match, 0 when
  // there is none, or a negative PCRE2 error code (e.g. the match limit that bounds
  // pathological backtracking).
  int Find(std::string_view subject, size_t start, size_t* begin, size_t* end) const;

  // A status for a negative Find result.
  absl::Status FindError(int code) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;   // as given (for messages)
  void* code_ = nullptr;  // pcre2_code*
  bool jit_ = false;
};

}  // namespace dsv2::tokenizer
