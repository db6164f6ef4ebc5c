// The built-in demo checkpoint: a small DeepSeek-V2-family model with random weights (written
// deterministically by dsv2 itself) and a small V2-style BPE tokenizer compiled into the binary.
// It lets the server, the client and the whole path run without downloading 31 GB. Its output
// is meaningless text.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace dsv2 {

// Writes the demo checkpoint to `dir` unless a complete one is already there; returns `dir`.
// `progress` lines go to stderr.
absl::StatusOr<std::string> EnsureDemoModel(const std::string& dir);

// Where the demo checkpoint lives by default: $DSV2_DEMO_DIR, else
// $XDG_CACHE_HOME/dsv2-serve/demo-model, else ~/.cache/dsv2-serve/demo-model.
std::string DefaultDemoModelDir();

}  // namespace dsv2
