// Unicode property sets as Hugging Face tokenizers sees them (its regex engine, Oniguruma, and
// Rust's char methods follow a newer Unicode version than Debian's PCRE2). The ranges are
// generated into unicode_ranges.inc by tools/make_tokenizer_fixtures.py.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace dsv2::tokenizer {

struct CodePointRange {
  uint32_t first;
  uint32_t last;
};

// Sorted, disjoint ranges of a general category ("L", "Lu", "Nd", ...), "White_Space" or
// "Word"; nullptr for a name the table does not hold.
const std::vector<CodePointRange>* FindUnicodeProperty(std::string_view name);

bool InRanges(const std::vector<CodePointRange>& ranges, uint32_t cp);

// Rust's char::is_numeric (general category N), used by the Digits pre-tokenizer.
bool IsNumeric(uint32_t cp);
// The White_Space property (regex \s of Oniguruma and Rust's regex crate).
bool IsWhiteSpace(uint32_t cp);
// Word characters (regex \w), used for single_word added tokens.
bool IsWordChar(uint32_t cp);

// The complement of sorted, disjoint ranges within [0, 0x10FFFF].
std::vector<CodePointRange> Complement(const std::vector<CodePointRange>& ranges);
// Sorts and merges overlapping or adjacent ranges.
std::vector<CodePointRange> Coalesce(std::vector<CodePointRange> ranges);
// a minus b, both sorted and disjoint.
std::vector<CodePointRange> Subtract(const std::vector<CodePointRange>& a,
                                     const std::vector<CodePointRange>& b);

}  // namespace dsv2::tokenizer
