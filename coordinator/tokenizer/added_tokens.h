// Added tokens of tokenizer.json ("added_tokens"): found in the input before pre-tokenization,
// leftmost-longest, honouring single_word, lstrip, rstrip and normalized as HF does. Tokens with
// normalized=false are matched in the raw text first; the rest of the text is then normalized
// and searched for the normalized=true tokens (whose contents are normalized too).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/json_document.h"
#include "coordinator/tokenizer/normalizer.h"

namespace dsv2::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  // The content after the normalizer when `normalized`; HF decodes the token as this.
  std::string normalized_content;
};

// A byte range of the searched text: an added token (id >= 0) or plain text (id == -1).
struct Segment {
  size_t begin;
  size_t end;
  int32_t id;
};

// Leftmost-longest matching of a fixed set of strings (a byte trie).
class TokenTrie {
 public:
  void Add(std::string_view s, int32_t index);
  // The leftmost match at or after `from`, longest at that place: its index, and [begin, end).
  bool FindFrom(std::string_view text, size_t from, size_t* begin, size_t* end,
                int32_t* index) const;
  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    int32_t terminal = -1;
  };
  std::vector<Node> nodes_{Node{}};
  absl::flat_hash_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child
  bool first_byte_[256] = {};
};

class AddedVocabulary {
 public:
  static absl::StatusOr<AddedVocabulary> Load(const Json& added_tokens,
                                              const Normalizer* normalizer);

  // Splits `text` into added-token matches and plain text (raw pass or normalized pass).
  void Split(std::string_view text, bool normalized_pass, std::vector<Segment>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* FindById(int32_t id) const;
  int32_t FindByContent(std::string_view content) const;  // -1 when absent
  bool has_normalized() const { return !normalized_trie_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  TokenTrie raw_trie_, normalized_trie_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
};

}  // namespace dsv2::tokenizer
