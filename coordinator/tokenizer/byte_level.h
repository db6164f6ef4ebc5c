// The byte-level alphabet of GPT-2 style BPE: every byte has a printable code point
// ('!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves; the other 68 bytes to U+0100..U+0143), so
// that vocabularies can be stored as text.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv2::tokenizer {

class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();

  uint32_t CodePointOf(uint8_t byte) const { return byte_to_cp_[byte]; }
  // The byte a code point stands for, or nullopt when it is not in the alphabet.
  std::optional<uint8_t> ByteOf(uint32_t cp) const;

  // Maps every byte of `bytes` to its code point, as UTF-8.
  std::string Encode(std::string_view bytes) const;
  // The bytes a token's text stands for; nullopt when a character is outside the alphabet.
  std::optional<std::string> Decode(std::string_view text) const;

 private:
  ByteLevelAlphabet();
  std::array<uint32_t, 256> byte_to_cp_{};
  std::array<int16_t, 324> cp_to_byte_{};  // code points < 324; -1 when none
};

}  // namespace dsv2::tokenizer
