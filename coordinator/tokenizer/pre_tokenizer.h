// Pre-tokenizers of tokenizer.json: Sequence, Split (Regex or String pattern; Removed,
// Isolated, MergedWithPrevious, MergedWithNext, Contiguous; invert), Digits and ByteLevel
// (with or without its GPT-2 regex). Any other type is a load error naming it.
//
// Pieces are byte spans of one text buffer. ByteLevel's byte-to-alphabet mapping is not applied
// here: the BPE model works on raw bytes (its vocabulary is converted at load), so ByteLevel
// must be the last step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json_document.h"

namespace dsv2::tokenizer {

struct Span {
  uint32_t begin;
  uint32_t end;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every span of `in` and appends the non-empty pieces, in order, to `out`. May append
  // to `text` (a prefix space) and point pieces there.
  virtual absl::Status Split(std::string& text, const std::vector<Span>& in,
                             std::vector<Span>& out) const = 0;
};

struct PreTokenizerPipeline {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  bool byte_level = false;  // the last step was ByteLevel: BPE runs on bytes
};

// An empty pipeline for a JSON null.
absl::StatusOr<PreTokenizerPipeline> MakePreTokenizer(const Json& json);

}  // namespace dsv2::tokenizer
