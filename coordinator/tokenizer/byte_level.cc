#include "coordinator/tokenizer/byte_level.h"

#include "common/utf8.h"

namespace dsv2::tokenizer {

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  cp_to_byte_.fill(-1);
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    byte_to_cp_[b] = printable ? b : next++;
    cp_to_byte_[byte_to_cp_[b]] = static_cast<int16_t>(b);
  }
}

std::optional<uint8_t> ByteLevelAlphabet::ByteOf(uint32_t cp) const {
  if (cp >= cp_to_byte_.size() || cp_to_byte_[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(cp_to_byte_[cp]);
}

std::string ByteLevelAlphabet::Encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(byte_to_cp_[static_cast<uint8_t>(c)], out);
  return out;
}

std::optional<std::string> ByteLevelAlphabet::Decode(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (ValidSequenceLength(text, i) == 0) return std::nullopt;
    const std::optional<uint8_t> b = ByteOf(DecodeCodePoint(text, i));
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
  }
  return out;
}

}  // namespace dsv2::tokenizer
