// The pre-tokenizers of the DeepSeek tokenizers, as their tokenizer.json files configure them
// (tests/data/tokenizer/v2, v3), under the names llama.cpp gives them in a GGUF file's
// tokenizer.ggml.pre: a GGUF file carries that name, not the regexes. Data, not code.
#pragma once

#include <string>
#include <string_view>

#include "common/json_document.h"

namespace dsv2 {

// The DeepSeek-V2 (LLM, Coder) tokenizer: "deepseek-llm".
inline constexpr std::string_view kDeepSeekLlmPreTokenizer =
    R"json({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "\\s?[!-/:-~！-／：-～‘-‟　-。]+"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "\\s+$"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[一-龥ࠀ-一가-퟿]+"}, "behavior": "Isolated", "invert": false}, {"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json";

// The DeepSeek-V3 tokenizer: "deepseek-v3".
inline constexpr std::string_view kDeepSeekV3PreTokenizer =
    R"json({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json";

// The tokenizer.ggml.pre name of a tokenizer.json pre_tokenizer: "deepseek-llm",
// "deepseek-v3", or "" for another.
inline std::string GgufPreTokenizerName(const Json& pre_tokenizer) {
  if (pre_tokenizer == Json::parse(kDeepSeekLlmPreTokenizer)) return "deepseek-llm";
  if (pre_tokenizer == Json::parse(kDeepSeekV3PreTokenizer)) return "deepseek-v3";
  return "";
}

// The pre_tokenizer of a tokenizer.ggml.pre name; "joyai-llm" is llama.cpp's name for a
// tokenizer whose test-string tokenization hashes as DeepSeek-V3's does (its converter wrote
// it for the V3 tokenizer). Null for another name.
inline const std::string_view* GgufPreTokenizer(const std::string& name) {
  if (name == "deepseek-llm") return &kDeepSeekLlmPreTokenizer;
  if (name == "deepseek-v3" || name == "joyai-llm") return &kDeepSeekV3PreTokenizer;
  return nullptr;
}

}  // namespace dsv2
