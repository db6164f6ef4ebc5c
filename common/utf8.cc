#include "common/utf8.h"

#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

// Length of the longest prefix of s[i..] that is the start of some valid sequence (1..3 bytes),
// or the full sequence length when it is complete; 0 when s[i] cannot start a sequence.
// `complete` tells which case it is.
size_t ValidPrefix(std::string_view s, size_t i, bool& complete) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  complete = false;
  if (b0 < 0x80) {
    complete = true;
    return 1;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t n = 1;
  while (n < need) {
    if (i + n >= s.size()) return n;  // incomplete, still possibly valid
    const auto b = static_cast<unsigned char>(s[i + n]);
    const unsigned char l = n == 1 ? lo : 0x80, h = n == 1 ? hi : 0xBF;
    if (b < l || b > h) return n;  // a maximal subpart ends here
    ++n;
  }
  complete = true;
  return n;
}

}  // namespace

size_t ValidSequenceLength(std::string_view s, size_t i) {
  if (i >= s.size()) return 0;
  bool complete;
  const size_t n = ValidPrefix(s, i, complete);
  return complete ? n : 0;
}

absl::Status ValidateUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Fast path over ASCII, eight bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t n = ValidSequenceLength(s, i);
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("text is not valid UTF-8: invalid byte sequence at offset ", i));
    }
    i += n;
  }
  return absl::OkStatus();
}

uint32_t DecodeCodePoint(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  auto cont = [&](size_t k) { return static_cast<unsigned char>(s[i + k]) & 0x3Fu; };
  uint32_t cp;
  if (b0 < 0xE0) {
    cp = ((b0 & 0x1Fu) << 6) | cont(1);
    i += 2;
  } else if (b0 < 0xF0) {
    cp = ((b0 & 0x0Fu) << 12) | (cont(1) << 6) | cont(2);
    i += 3;
  } else {
    cp = ((b0 & 0x07u) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    i += 4;
  }
  return cp;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void AppendLossy(std::string_view bytes, std::string& out) {
  size_t i = 0, run = 0;  // [run, i) is valid text not yet copied
  while (i < bytes.size()) {
    bool complete;
    size_t n = ValidPrefix(bytes, i, complete);
    if (complete) {
      i += n;
      continue;
    }
    out.append(bytes.data() + run, i - run);
    out += "\xEF\xBF\xBD";
    i += n == 0 ? 1 : n;
    run = i;
  }
  out.append(bytes.data() + run, i - run);
}

size_t CompletePrefixLength(std::string_view bytes) {
  // Only the last three bytes can hold the start of an unfinished sequence.
  const size_t from = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t i = from; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    if (b < 0xC0) continue;  // not a lead byte
    bool complete;
    const size_t n = ValidPrefix(bytes, i, complete);
    if (!complete && n > 0 && i + n == bytes.size()) return i;
  }
  return bytes.size();
}

}  // namespace dsv2
