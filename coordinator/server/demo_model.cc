#include "coordinator/server/demo_model.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/synthetic_checkpoint.h"
#include "coordinator/server/demo_tokenizer_data.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

// Bump when the demo's config, weights or tokenizer change, so old copies are rewritten.
constexpr const char* kDemoVersion = "dsv2-demo-2";

absl::Status WriteText(const fs::path& path, const char* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data, static_cast<std::streamsize>(size));
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

}  // namespace

std::string DefaultDemoModelDir() {
  if (const char* d = std::getenv("DSV2_DEMO_DIR"); d != nullptr && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x) {
    return (fs::path(x) / "dsv2-serve" / "demo-model").string();
  }
  const char* home = std::getenv("HOME");
  return (fs::path(home != nullptr && *home ? home : "/tmp") / ".cache" / "dsv2-serve" /
          "demo-model")
      .string();
}

absl::StatusOr<std::string> EnsureDemoModel(const std::string& dir) {
  const fs::path root(dir);
  const fs::path marker = root / "DEMO_VERSION";
  {
    std::ifstream in(marker);
    std::string version;
    if (in && std::getline(in, version) && version == kDemoVersion) return dir;
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  DSV2_RETURN_IF_ERROR(
      WriteText(root / "tokenizer.json", kDemoTokenizerJson, kDemoTokenizerJsonSize));
  DSV2_RETURN_IF_ERROR(WriteText(root / "tokenizer_config.json", kDemoTokenizerConfigJson,
                                 kDemoTokenizerConfigJsonSize));
  DSV2_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::Load(dir));
  ModelConfig config = DemoModelConfig();
  // Every token id the tokenizer can produce has an embedding row (rounded up to 64).
  config.vocab_size = (tok->vocab_size() + 63) / 64 * 64;
  config.bos_token_id = tok->bos_id();
  config.eos_token_ids = {tok->eos_id()};
  std::fprintf(stderr, "writing the demo checkpoint (random weights) to %s\n", dir.c_str());
  DSV2_RETURN_IF_ERROR(
      WriteSyntheticCheckpoint(config, dir, {.seed = 20261128, .num_shards = 1, .progress = {}}));
  const std::string version = std::string(kDemoVersion) + "\n";
  DSV2_RETURN_IF_ERROR(WriteText(marker, version.data(), version.size()));
  return dir;
}

}  // namespace dsv2
