// Text in, text out: a Hugging Face tokenizer.json (BPE) with its tokenizer_config.json.
//
//   auto tok = Tokenizer::Load("/models/DeepSeek-V2-Lite-Chat");
//   absl::StatusOr<std::vector<int32_t>> ids = (*tok)->Encode("Hello", /*add_special=*/true);
//   absl::StatusOr<std::string> text = (*tok)->Decode(*ids, /*skip_special=*/true);
//
// Encode gives the ids of HF tokenizers (`Tokenizer.encode`), with BOS/EOS added per
// add_bos_token/add_eos_token of tokenizer_config.json when add_special is true (as transformers'
// LlamaTokenizerFast does), or else per the post_processor of tokenizer.json. Special-token
// strings in the text always become their ids. Invalid UTF-8 input is INVALID_ARGUMENT naming
// the byte offset (HF's Python API cannot even receive such text). Decode converts invalid
// UTF-8 produced by the tokens into U+FFFD like HF, and rejects ids outside the vocabulary.
// All methods are const and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json_document.h"
#include "coordinator/tokenizer/added_tokens.h"
#include "coordinator/tokenizer/bpe_model.h"
#include "coordinator/tokenizer/chat_format.h"
#include "coordinator/tokenizer/decoder.h"
#include "coordinator/tokenizer/normalizer.h"
#include "coordinator/tokenizer/pre_tokenizer.h"

namespace dsv2 {

using tokenizer::ChatMessage;

class Tokenizer {
 public:
  // Reads model_dir/tokenizer.json and (when present) model_dir/tokenizer_config.json. Errors
  // name the file and the component ("tokenizer.json: pre_tokenizer: ...").
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);
  // The same from parsed documents; `config` may be null (no tokenizer_config.json).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(const Json& tokenizer_json,
                                                             const Json* config);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special) const;
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids, bool skip_special) const;

  // Chat prompt of the template in tokenizer_config.json (DeepSeek-V2 or -V3 format).
  absl::StatusOr<std::string> ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                                bool add_generation_prompt) const;

  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }  // -1 when none
  // One past the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;

  // What the incremental detokenizer needs: the bytes a token adds to the output (empty for
  // an unknown id), whether the output is converted lossily, and the separator between tokens.
  const std::string* TokenBytes(int32_t id) const;
  const tokenizer::DecoderSpec& decoder() const { return decoder_; }

 private:
  Tokenizer() = default;
  absl::Status EncodeText(std::string_view text, std::vector<int32_t>& out) const;
  absl::Status EncodePlain(std::string text, std::vector<int32_t>& out) const;

  std::unique_ptr<tokenizer::Normalizer> normalizer_;
  tokenizer::PreTokenizerPipeline pre_tokenizer_;
  std::unique_ptr<tokenizer::BpeModel> model_;
  tokenizer::AddedVocabulary added_;
  tokenizer::DecoderSpec decoder_;
  std::vector<std::string> token_bytes_;  // per id, for Decode
  std::vector<uint8_t> id_flags_;         // bit 0: known id, bit 1: special
  std::vector<int32_t> special_prefix_, special_suffix_;
  int32_t bos_id_ = -1, eos_id_ = -1, vocab_size_ = 0;
  std::string bos_token_, eos_token_;
  absl::StatusOr<tokenizer::ChatFormat> chat_format_ =
      absl::NotFoundError("tokenizer_config.json has no chat_template");
};

// Streams decoded text: Add() returns only complete UTF-8, never revises what it returned, and
// the concatenation of everything returned (plus Flush()) equals Decode of all the ids.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special)
      : tok_(tokenizer), skip_special_(skip_special) {}

  // The new text after `id` (often empty while a character is incomplete).
  absl::StatusOr<std::string> Add(int32_t id);
  // Ends the stream: pending bytes of an unfinished character become U+FFFD.
  std::string Flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;  // bytes not yet returned
};

}  // namespace dsv2
