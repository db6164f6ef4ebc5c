// The built-in demo model: a small DeepSeek-V2 (5 layers, MLA, yarn, 2 shared + 16 routed experts)
// trained on Shakespeare by tools/train_demo_model.sh and committed under assets/demo-model. It
// lets the server, the client and the whole path run, with readable text, without downloading
// 31 GB. Installed beside the programs as <prefix>/share/dsv2-serve/demo-model.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace dsv2 {

// Where the demo model is, first found of: $DSV2_DEMO_MODEL; <directory of this program>/../share/
// dsv2-serve/demo-model (an install, the container image); the source tree's assets/demo-model
// (a build tree). The error names every place looked at.
absl::StatusOr<std::string> FindDemoModel();

}  // namespace dsv2
