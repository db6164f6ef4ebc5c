#include "coordinator/tokenizer/unicode_tables.h"

#include <algorithm>
#include <string>

namespace dsv2::tokenizer {
namespace {

struct PropertyTable {
  const char* name;
  std::vector<CodePointRange> ranges;
};

const std::vector<PropertyTable>& Tables() {
#define DSV2_UNICODE_PROPERTY(name, count, ...) {name, std::vector<CodePointRange> __VA_ARGS__},
  static const auto* tables = new std::vector<PropertyTable>{
#include "coordinator/tokenizer/unicode_ranges.inc"
  };
#undef DSV2_UNICODE_PROPERTY
  return *tables;
}

const std::vector<CodePointRange>& Required(std::string_view name) {
  static const std::vector<CodePointRange> kEmpty;
  const auto* r = FindUnicodeProperty(name);
  return r ? *r : kEmpty;
}

}  // namespace

const std::vector<CodePointRange>* FindUnicodeProperty(std::string_view name) {
  for (const PropertyTable& t : Tables()) {
    if (name == t.name) return &t.ranges;
  }
  return nullptr;
}

bool InRanges(const std::vector<CodePointRange>& ranges, uint32_t cp) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                             [](uint32_t c, const CodePointRange& r) { return c < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}

bool IsNumeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  static const auto& n = Required("N");
  return InRanges(n, cp);
}

bool IsWhiteSpace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  static const auto& ws = Required("White_Space");
  return InRanges(ws, cp);
}

bool IsWordChar(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  }
  static const auto& w = Required("Word");
  return InRanges(w, cp);
}

std::vector<CodePointRange> Complement(const std::vector<CodePointRange>& ranges) {
  std::vector<CodePointRange> out;
  uint32_t next = 0;
  for (const CodePointRange& r : ranges) {
    if (r.first > next) out.push_back({next, r.first - 1});
    next = r.last + 1;
  }
  if (next <= 0x10FFFF) out.push_back({next, 0x10FFFF});
  return out;
}

std::vector<CodePointRange> Coalesce(std::vector<CodePointRange> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const CodePointRange& a, const CodePointRange& b) { return a.first < b.first; });
  std::vector<CodePointRange> out;
  for (const CodePointRange& r : ranges) {
    if (!out.empty() && r.first <= out.back().last + 1) {
      out.back().last = std::max(out.back().last, r.last);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<CodePointRange> Subtract(const std::vector<CodePointRange>& a,
                                     const std::vector<CodePointRange>& b) {
  std::vector<CodePointRange> out;
  size_t j = 0;
  for (CodePointRange r : a) {
    while (j < b.size() && b[j].last < r.first) ++j;
    size_t k = j;
    uint32_t start = r.first;
    bool done = false;
    while (k < b.size() && b[k].first <= r.last) {
      if (b[k].first > start) out.push_back({start, b[k].first - 1});
      if (b[k].last >= r.last) {
        done = true;
        break;
      }
      start = std::max(start, b[k].last + 1);
      ++k;
    }
    if (!done && start <= r.last) out.push_back({start, r.last});
  }
  return out;
}

}  // namespace dsv2::tokenizer
