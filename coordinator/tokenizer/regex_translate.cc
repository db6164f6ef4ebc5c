// TranslatePattern (regex.h): Oniguruma pattern -> PCRE2 pattern with the same meaning.
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/utf8.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/unicode_tables.h"

namespace dsv2::tokenizer {
namespace {

// How to write a Unicode property in PCRE2 so that it means what Oniguruma means: PCRE2's own
// \p{X} plus the code points PCRE2's older tables miss, or (when PCRE2 has code points that
// Oniguruma does not) the full list of ranges.
struct PropertyForm {
  std::string native;                  // "\\p{L}" or empty
  std::vector<CodePointRange> extra;   // added to `native`
  std::vector<CodePointRange> ranges;  // the whole set (for negation inside a class)
};

// All scalar values as UTF-8, to run PCRE2's tables over.
const std::string& AllCodePoints() {
  static const std::string* all = [] {
    auto* s = new std::string();
    s->reserve(4 * 0x110000);
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
      if (cp < 0xD800 || cp > 0xDFFF) AppendUtf8(cp, *s);
    }
    return s;
  }();
  return *all;
}

std::vector<CodePointRange> PcreSet(const std::string& pcre_class) {
  std::vector<CodePointRange> out;
  auto re = Regex::CompilePcre(pcre_class + "+");
  if (!re.ok()) return out;
  const std::string& all = AllCodePoints();
  size_t pos = 0, b, e;
  while (pos < all.size() && (*re)->Find(all, pos, &b, &e) == 1) {
    size_t i = b;
    const uint32_t first = DecodeCodePoint(all, i);
    uint32_t last = first;
    while (i < e) last = DecodeCodePoint(all, i);
    out.push_back({first, last});
    pos = e;
  }
  return Coalesce(std::move(out));  // runs may split at the surrogate gap
}

const PropertyForm* FormOf(const std::string& name) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, PropertyForm>();
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache->find(name); it != cache->end()) return &it->second;
  const std::vector<CodePointRange>* ranges = FindUnicodeProperty(name);
  if (ranges == nullptr) return nullptr;
  PropertyForm form;
  form.ranges = *ranges;
  if (name != "White_Space" && name != "Word") {
    const std::string native = "\\p{" + name + "}";
    const std::vector<CodePointRange> pcre = PcreSet(native);
    if (!pcre.empty() && Subtract(pcre, *ranges).empty()) {
      form.native = native;
      form.extra = Subtract(*ranges, pcre);
    }
  }
  if (form.native.empty()) form.extra = *ranges;
  return &cache->emplace(name, std::move(form)).first->second;
}

void AppendRanges(const std::vector<CodePointRange>& ranges, std::string& out) {
  for (const CodePointRange& r : ranges) {
    if (r.first == r.last) {
      absl::StrAppendFormat(&out, "\\x{%X}", r.first);
    } else {
      absl::StrAppendFormat(&out, "\\x{%X}-\\x{%X}", r.first, r.last);
    }
  }
}

class Translator {
 public:
  explicit Translator(std::string_view p) : p_(p) {}

  absl::StatusOr<std::string> Run() {
    while (i_ < p_.size()) {
      const char c = p_[i_];
      if (c == '\\') {
        if (absl::Status s = Escape(); !s.ok()) return s;
      } else if (c == '[') {
        if (in_class_) {
          if (i_ + 1 < p_.size() && p_[i_ + 1] == ':') {  // POSIX bracket [:alpha:]
            const size_t close = p_.find(":]", i_ + 2);
            if (close == std::string_view::npos) return Error("unterminated POSIX bracket");
            out_.append(p_.substr(i_, close + 2 - i_));
            i_ = close + 2;
            continue;
          }
          return Error("nested character classes are not supported");
        }
        in_class_ = true;
        out_ += '[';
        ++i_;
        if (i_ < p_.size() && p_[i_] == '^') {
          out_ += '^';
          ++i_;
        }
        if (i_ < p_.size() && p_[i_] == ']') {  // a leading ']' is literal
          out_ += "\\]";
          ++i_;
        }
      } else if (c == ']' && in_class_) {
        AppendRanges(Coalesce(std::move(class_extra_)), out_);
        class_extra_.clear();
        in_class_ = false;
        out_ += ']';
        ++i_;
      } else if (c == '&' && in_class_ && i_ + 1 < p_.size() && p_[i_ + 1] == '&') {
        return Error("character class intersection (&&) is not supported");
      } else {
        out_ += c;
        ++i_;
      }
    }
    if (in_class_) return Error("unterminated character class");
    return out_;
  }

 private:
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("regex '", std::string(p_), "': ", std::string(what), " (offset ", i_, ")"));
  }

  // Writes a set (or its negation) at the current place: inside a class, its members; outside,
  // a class of its own.
  void EmitSet(const PropertyForm& f, bool negate) {
    if (in_class_) {
      if (negate) {
        const std::vector<CodePointRange> complement = Complement(f.ranges);
        class_extra_.insert(class_extra_.end(), complement.begin(), complement.end());
      } else {
        out_ += f.native;
        class_extra_.insert(class_extra_.end(), f.extra.begin(), f.extra.end());
      }
      return;
    }
    out_ += negate ? "[^" : "[";
    out_ += f.native;
    AppendRanges(f.extra, out_);
    out_ += ']';
  }

  absl::Status Escape() {
    if (i_ + 1 >= p_.size()) return Error("trailing backslash");
    const char e = p_[i_ + 1];
    i_ += 2;
    switch (e) {
      case 's':
      case 'S':
        return Named("White_Space", e == 'S');
      case 'w':
      case 'W':
        return Named("Word", e == 'W');
      case 'd':
      case 'D':
        return Named("Nd", e == 'D');
      case 'h':
      case 'H': {
        static const PropertyForm kHex{
            "", {{'0', '9'}, {'A', 'F'}, {'a', 'f'}}, {{'0', '9'}, {'A', 'F'}, {'a', 'f'}}};
        EmitSet(kHex, e == 'H');
        return absl::OkStatus();
      }
      case 'p':
      case 'P':
        return Property(e == 'P');
      case 'u': {
        if (i_ + 4 > p_.size()) return Error("truncated \\u escape");
        absl::StrAppend(&out_, "\\x{", std::string(p_.substr(i_, 4)), "}");
        i_ += 4;
        return absl::OkStatus();
      }
      default:
        out_ += '\\';
        out_ += e;
        return absl::OkStatus();
    }
  }

  absl::Status Named(const std::string& name, bool negate) {
    const PropertyForm* f = FormOf(name);
    if (f == nullptr) return Error("missing Unicode table " + name);
    EmitSet(*f, negate);
    return absl::OkStatus();
  }

  absl::Status Property(bool negate) {
    std::string name;
    const size_t start = i_ - 2;
    if (i_ < p_.size() && p_[i_] == '{') {
      const size_t close = p_.find('}', i_);
      if (close == std::string_view::npos) return Error("unterminated \\p{");
      name = std::string(p_.substr(i_ + 1, close - i_ - 1));
      i_ = close + 1;
    } else if (i_ < p_.size()) {
      name = std::string(1, p_[i_++]);
    } else {
      return Error("truncated \\p");
    }
    if (!name.empty() && name[0] == '^') {
      negate = !negate;
      name.erase(0, 1);
    }
    const PropertyForm* f = FormOf(name);
    if (f == nullptr) {  // scripts and other properties: PCRE2's own tables
      out_.append(p_.substr(start, i_ - start));
      return absl::OkStatus();
    }
    EmitSet(*f, negate);
    return absl::OkStatus();
  }

  std::string_view p_;
  size_t i_ = 0;
  bool in_class_ = false;
  std::vector<CodePointRange> class_extra_;
  std::string out_;
};

}  // namespace

absl::StatusOr<std::string> TranslatePattern(std::string_view onig_pattern) {
  return Translator(onig_pattern).Run();
}

}  // namespace dsv2::tokenizer
