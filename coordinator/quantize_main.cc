// dsv2-quantize: a Hugging Face DeepSeek-V2 checkpoint written as a deepseek2 GGUF file
// (coordinator/model/gguf_export.h), its matrices quantized:
//   dsv2-quantize IN_DIR OUT.gguf --type q8_0|q4_k_m|q4_k|q5_k|q6_k|q4_0|q5_0|iq4_nl|bf16
// The file loads in dsv2-coordinator / dsv2-generate (--model OUT.gguf, with the checkpoint's
// tokenizer.json beside it) and in llama.cpp.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/cli_flags.h"
#include "common/startup_checks.h"
#include "coordinator/model/gguf_export.h"

ABSL_FLAG(std::string, type, "q4_k_m",
          "Format of the matrices: q8_0, q4_k_m (Q4_K with Q6_K on lm_head and some down "
          "projections), q4_k, q5_k, q6_k, q4_0, q5_0, iq4_nl, or bf16 (the matrices as stored, "
          "no quantization). Norms "
          "and the router gate stay float32; rows that are not whole 256-blocks fall back to "
          "Q5_0 / Q8_0.");
ABSL_FLAG(int, threads, 0, "Quantizing threads (0: one per core).");

int main(int argc, char** argv) {
  const std::vector<std::string> args =
      dsv2::ParseFlags(argc, argv,
                       "Writes a DeepSeek-V2 checkpoint as a quantized GGUF file.\n"
                       "  dsv2-quantize IN_DIR OUT.gguf [--type q8_0|q4_k_m|...]");
  static constexpr dsv2::FlagRange kRanges[] = {{"threads", 0, 4096, "0: one per core"}};
  dsv2::ExitOnBadFlags("dsv2-quantize", kRanges);
  if (args.size() != 2) {
    std::fprintf(stderr, "dsv2-quantize: give IN_DIR and OUT.gguf (see --help)\n");
    return 2;
  }
  const std::string type = absl::GetFlag(FLAGS_type);
  absl::StatusOr<dsv2::QuantScheme> scheme =
      dsv2::QuantScheme::Parse(type == "bf16" ? "none" : type);
  if (!scheme.ok()) {
    std::fprintf(stderr,
                 "dsv2-quantize: --type: '%s' is not one of bf16, q8_0, q4_k_m, q4_k, "
                 "q5_k, q6_k, q4_0, q5_0, iq4_nl\n",
                 type.c_str());
    return 2;
  }
  const absl::Status s = dsv2::ExportGguf({.model_dir = args[0],
                                           .out = args[1],
                                           .scheme = *scheme,
                                           .threads = absl::GetFlag(FLAGS_threads)});
  if (!s.ok()) {
    std::fprintf(stderr, "dsv2-quantize: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
