#include "coordinator/tokenizer/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace dsv2 {

using tokenizer::Segment;
using tokenizer::Span;

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special) const {
  DSV2_RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special) ids = special_prefix_;
  DSV2_RETURN_IF_ERROR(EncodeText(text, ids));
  if (add_special) ids.insert(ids.end(), special_suffix_.begin(), special_suffix_.end());
  return ids;
}

absl::Status Tokenizer::EncodeText(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Segment> raw;
  added_.Split(text, /*normalized_pass=*/false, raw);
  std::vector<Segment> normalized;
  for (const Segment& seg : raw) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    std::string piece(text.substr(seg.begin, seg.end - seg.begin));
    if (normalizer_ && !normalizer_->IsIdentity()) {
      DSV2_RETURN_IF_ERROR(normalizer_->Normalize(piece));
    }
    if (!added_.has_normalized()) {
      DSV2_RETURN_IF_ERROR(EncodePlain(std::move(piece), out));
      continue;
    }
    normalized.clear();
    added_.Split(piece, /*normalized_pass=*/true, normalized);
    if (normalized.size() == 1 && normalized[0].id < 0) {
      DSV2_RETURN_IF_ERROR(EncodePlain(std::move(piece), out));
      continue;
    }
    for (const Segment& s : normalized) {
      if (s.id >= 0) {
        out.push_back(s.id);
      } else {
        DSV2_RETURN_IF_ERROR(EncodePlain(piece.substr(s.begin, s.end - s.begin), out));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::EncodePlain(std::string text, std::vector<int32_t>& out) const {
  if (text.empty()) return absl::OkStatus();
  if (text.size() > UINT32_MAX / 2) return absl::InvalidArgumentError("text is too long");
  std::vector<Span> spans{{0, static_cast<uint32_t>(text.size())}}, next;
  for (const auto& step : pre_tokenizer_.steps) {
    next.clear();
    next.reserve(spans.size() + text.size() / 4);
    DSV2_RETURN_IF_ERROR(step->Split(text, spans, next));
    spans.swap(next);
  }
  for (const Span& s : spans) {
    model_->Tokenize(std::string_view(text.data() + s.begin, s.end - s.begin), out);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                              bool skip_special) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_ || !(id_flags_[id] & 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary (size ", vocab_size_, ")"));
    }
    if (skip_special && (id_flags_[id] & 2)) continue;
    if (!first) bytes += decoder_.separator;
    first = false;
    bytes += token_bytes_[id];
  }
  if (!decoder_.byte_level) return bytes;
  std::string text;
  text.reserve(bytes.size());
  AppendLossy(bytes, text);
  return text;
}

absl::StatusOr<std::string> Tokenizer::ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                                         bool add_generation_prompt) const {
  if (!chat_format_.ok()) return chat_format_.status();
  return tokenizer::RenderChat(*chat_format_, messages, add_generation_prompt, bos_token_,
                               eos_token_);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const tokenizer::AddedToken* a = added_.FindById(id)) return a->normalized_content;
  if (const std::string* s = model_->IdToToken(id)) return *s;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  if (int32_t id = added_.FindByContent(token); id >= 0) return id;
  if (int32_t id = model_->TokenToId(token); id >= 0) return id;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size_ && (id_flags_[id] & 2);
}

const std::string* Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size_ || !(id_flags_[id] & 1)) return nullptr;
  return &token_bytes_[id];
}

absl::StatusOr<std::string> IncrementalDetokenizer::Add(int32_t id) {
  const std::string* bytes = tok_.TokenBytes(id);
  if (bytes == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
  }
  if (skip_special_ && tok_.IsSpecial(id)) return std::string();
  if (!first_) pending_ += tok_.decoder().separator;
  first_ = false;
  pending_ += *bytes;
  std::string out;
  if (!tok_.decoder().byte_level) {
    out.swap(pending_);
    return out;
  }
  const size_t ready = CompletePrefixLength(pending_);
  AppendLossy(std::string_view(pending_).substr(0, ready), out);
  pending_.erase(0, ready);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  AppendLossy(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace dsv2
