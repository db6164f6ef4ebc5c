#include "coordinator/tokenizer/added_tokens.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "coordinator/tokenizer/json_fields.h"
#include "coordinator/tokenizer/unicode_tables.h"

namespace dsv2::tokenizer {
namespace {

// The code point that ends just before byte `at` (at > 0).
uint32_t CodePointBefore(std::string_view s, size_t at) {
  size_t start = at - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return DecodeCodePoint(s, start);
}

}  // namespace

void TokenTrie::Add(std::string_view s, int32_t index) {
  int32_t node = 0;
  for (char c : s) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
    auto it = edges_.find(key);
    if (it == edges_.end()) {
      nodes_.push_back(Node{});
      it = edges_.emplace(key, static_cast<int32_t>(nodes_.size() - 1)).first;
    }
    node = it->second;
  }
  if (nodes_[node].terminal < 0) nodes_[node].terminal = index;  // first one wins on duplicates
  first_byte_[static_cast<uint8_t>(s[0])] = true;
}

bool TokenTrie::FindFrom(std::string_view text, size_t from, size_t* begin, size_t* end,
                         int32_t* index) const {
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) continue;
    int32_t node = 0, found = -1;
    size_t found_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[j]));
      if (it == edges_.end()) break;
      node = it->second;
      if (nodes_[node].terminal >= 0) {
        found = nodes_[node].terminal;
        found_end = j + 1;
      }
    }
    if (found >= 0) {
      *begin = i;
      *end = found_end;
      *index = found;
      return true;
    }
  }
  return false;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::Load(const Json& added_tokens,
                                                      const Normalizer* normalizer) {
  AddedVocabulary v;
  if (added_tokens.is_null()) return v;
  if (!added_tokens.is_array()) {
    return absl::InvalidArgumentError("added_tokens must be an array");
  }
  for (const Json& t : added_tokens) {
    AddedToken a;
    DSV2_ASSIGN_OR_RETURN(a.content, StringField(t, "content"));
    DSV2_ASSIGN_OR_RETURN(int64_t id, IntField(t, "id"));
    if (id < 0 || id > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("added token '", a.content, "' has id ", id));
    }
    a.id = static_cast<int32_t>(id);
    DSV2_ASSIGN_OR_RETURN(a.single_word, BoolField(t, "single_word", false));
    DSV2_ASSIGN_OR_RETURN(a.lstrip, BoolField(t, "lstrip", false));
    DSV2_ASSIGN_OR_RETURN(a.rstrip, BoolField(t, "rstrip", false));
    DSV2_ASSIGN_OR_RETURN(a.special, BoolField(t, "special", false));
    DSV2_ASSIGN_OR_RETURN(a.normalized, BoolField(t, "normalized", !a.special));
    if (a.content.empty()) continue;  // HF ignores empty tokens
    v.by_id_[a.id] = v.tokens_.size();
    v.by_content_[a.content] = a.id;
    v.tokens_.push_back(std::move(a));
  }
  for (AddedToken& a : v.tokens_) {
    a.normalized_content = a.content;
    if (a.normalized && normalizer)
      DSV2_RETURN_IF_ERROR(normalizer->Normalize(a.normalized_content));
  }
  // HF orders the matching set: special tokens first, then the others, each in file order.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < v.tokens_.size(); ++i) {
      const AddedToken& a = v.tokens_[i];
      if (a.special != (pass == 0)) continue;
      if (!a.normalized) {
        v.raw_trie_.Add(a.content, static_cast<int32_t>(i));
        continue;
      }
      if (!a.normalized_content.empty()) {
        v.normalized_trie_.Add(a.normalized_content, static_cast<int32_t>(i));
      }
    }
  }
  return v;
}

void AddedVocabulary::Split(std::string_view text, bool normalized_pass,
                            std::vector<Segment>& out) const {
  const TokenTrie& trie = normalized_pass ? normalized_trie_ : raw_trie_;
  size_t start_offset = 0, search = 0, b, e;
  int32_t index;
  while (search < text.size() && trie.FindFrom(text, search, &b, &e, &index)) {
    search = e;
    const AddedToken& a = tokens_[index];
    if (a.single_word) {
      const bool start_ok = b == 0 || !IsWordChar(CodePointBefore(text, b));
      size_t k = e;
      const bool stop_ok = e == text.size() || !IsWordChar(DecodeCodePoint(text, k));
      if (!start_ok || !stop_ok) continue;
    }
    if (a.lstrip) {
      size_t nb = b;
      while (nb > 0 && IsWhiteSpace(CodePointBefore(text, nb))) {
        size_t p = nb - 1;
        while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
        nb = p;
      }
      b = std::max(nb, start_offset);
    }
    if (a.rstrip) {
      while (e < text.size()) {
        size_t k = e;
        if (!IsWhiteSpace(DecodeCodePoint(text, k))) break;
        e = k;
      }
    }
    if (start_offset < b) out.push_back({start_offset, b, -1});
    out.push_back({b, e, a.id});
    start_offset = e;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

int32_t AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(absl::string_view(content.data(), content.size()));
  return it == by_content_.end() ? -1 : it->second;
}

}  // namespace dsv2::tokenizer
