// Normalizers of tokenizer.json: Sequence, Replace (String or Regex pattern), Prepend, Strip.
// Any other type is a load error naming it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json_document.h"

namespace dsv2::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual absl::Status Normalize(std::string& text) const = 0;
  // True when Normalize never changes anything (e.g. an empty Sequence).
  virtual bool IsIdentity() const { return false; }
};

// nullptr for a JSON null (no normalizer).
absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const Json& json);

}  // namespace dsv2::tokenizer
