// dsv2-make-checkpoint: writes a random bf16 checkpoint in the Hugging Face layout.
//   --preset v2-lite: DeepSeek-V2-Lite's shapes (the benchmark uses --layers 4: 1 dense + 3 MoE
//                     layers at real widths and vocab, ~4.5 GB; 4.7 GB with --vocab-size 129280);
//   --preset small:   a small model of the same family (~0.2 GB) for smoke tests.
// The weights are random: the model computes real MLA/MoE math but says nothing meaningful (the
// built-in demo model, assets/demo-model, is a trained one). config.json is spelled as
// DeepSeek-V2-Lite's, floats as floats, so transformers loads what this writes.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "common/cli_flags.h"
#include "common/model_config.h"
#include "common/startup_checks.h"
#include "common/synthetic_checkpoint.h"

ABSL_FLAG(std::string, out, "", "Directory to write config.json and the safetensors shards to.");
ABSL_FLAG(std::string, preset, "v2-lite",
          "Shapes: v2-lite (DeepSeek-V2-Lite, 31 GB at 27 layers) or small (~0.2 GB, 4 layers).");
ABSL_FLAG(std::string, like, "",
          "Take every shape from this checkpoint's config.json instead of a preset: a random "
          "twin of a real model (e.g. assets/demo-model), for benchmarks beside the trained one.");
ABSL_FLAG(int, layers, 0, "Decoder layers (0: the preset's; the first is dense, the rest MoE).");
ABSL_FLAG(int, vocab_size, 0,
          "Vocabulary rows (0: the preset's), e.g. 129280 to pair V2-Lite's shapes with the "
          "DeepSeek-V3 tokenizer (bench/compare_llamacpp.sh: llama.cpp's converter needs one).");
ABSL_FLAG(int, shards, 4, "Number of safetensors shards.");
ABSL_FLAG(uint64_t, seed, 1234, "Seed of the random weights.");

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv,
                   "Writes a random DeepSeek-V2-family checkpoint.\n"
                   "  dsv2-make-checkpoint --out DIR [--preset v2-lite|small | --like CHECKPOINT] "
                   "[--layers N]");
  static constexpr dsv2::FlagRange kRanges[] = {
      {"layers", 0, 4096, "0: the preset's"},
      {"vocab_size", 0, 1 << 24, "0: the preset's"},
      {"shards", 1, 4096},
  };
  dsv2::ExitOnBadFlags("dsv2-make-checkpoint", kRanges);
  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string preset = absl::GetFlag(FLAGS_preset);
  if (out.empty() || absl::GetFlag(FLAGS_layers) < 0 ||
      (preset != "v2-lite" && preset != "small")) {
    std::fprintf(stderr,
                 "dsv2-make-checkpoint: needs --out DIR, --preset v2-lite|small, --layers >= 0\n");
    return 2;
  }
  dsv2::ModelConfig config =
      preset == "small" ? dsv2::SmallModelConfig() : dsv2::ModelConfig::DeepSeekV2Lite();
  if (const std::string like = absl::GetFlag(FLAGS_like); !like.empty()) {
    absl::StatusOr<dsv2::ModelConfig> read = dsv2::LoadModelConfig(like);
    if (!read.ok()) {
      std::fprintf(stderr, "dsv2-make-checkpoint: --like: %s\n",
                   std::string(read.status().message()).c_str());
      return 2;
    }
    config = *std::move(read);
  }
  if (absl::GetFlag(FLAGS_layers) > 0) config.num_hidden_layers = absl::GetFlag(FLAGS_layers);
  if (absl::GetFlag(FLAGS_vocab_size) > 0) config.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  int last_pct = -1;
  const absl::Status s = dsv2::WriteSyntheticCheckpoint(
      config, out,
      {.seed = absl::GetFlag(FLAGS_seed),
       .num_shards = absl::GetFlag(FLAGS_shards),
       .progress = [&](int64_t done, int64_t total) {
         const int pct = static_cast<int>(100 * done / total);
         if (pct / 5 != last_pct / 5) {
           std::fprintf(stderr, "\rwriting %s: %3d%% of %.2f GB", out.c_str(), pct, total / 1e9);
           last_pct = pct;
         }
       }});
  std::fprintf(stderr, "\n");
  if (!s.ok()) {
    std::fprintf(stderr, "dsv2-make-checkpoint: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
