#include "coordinator/server/demo_model.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#ifndef DSV2_SOURCE_DEMO_MODEL
#define DSV2_SOURCE_DEMO_MODEL ""
#endif

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

bool IsCheckpoint(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "config.json", ec) &&
         fs::is_regular_file(dir / "model.safetensors", ec) &&
         fs::is_regular_file(dir / "tokenizer.json", ec);
}

}  // namespace

absl::StatusOr<std::string> FindDemoModel() {
  std::vector<fs::path> candidates;
  if (const char* d = std::getenv("DSV2_DEMO_MODEL"); d != nullptr && *d) {
    // Named explicitly: this one or an error, never a silent fallback.
    if (IsCheckpoint(d)) return std::string(d);
    return absl::NotFoundError(
        absl::StrCat("DSV2_DEMO_MODEL=", d,
                     " is not a checkpoint (config.json, model.safetensors and "
                     "tokenizer.json expected)"));
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path().parent_path() / "share/dsv2-serve/demo-model");
  if (*DSV2_SOURCE_DEMO_MODEL != '\0') candidates.emplace_back(DSV2_SOURCE_DEMO_MODEL);
  std::vector<std::string> looked;
  for (const fs::path& c : candidates) {
    if (IsCheckpoint(c)) return c.lexically_normal().string();
    looked.push_back(c.lexically_normal().string());
  }
  return absl::NotFoundError(
      absl::StrCat("the built-in demo model was not found (looked in ", absl::StrJoin(looked, ", "),
                   "); set DSV2_DEMO_MODEL=DIR or serve a checkpoint with --model DIR"));
}

}  // namespace dsv2
