// dsv2-generate: greedy generation on a GPU or the CPU, with per-token timing.
//   dsv2-generate --model DIR --prompt-ids 1,2,3 --max-new-tokens 16
//   dsv2-generate --model DIR --prompt "Once upon a time"   (needs DIR/tokenizer.json)
//   dsv2-generate --model DIR --chat "Hello!"               (chat template of the tokenizer)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/cli_flags.h"
#include "common/gguf.h"
#include "common/startup_checks.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/model/device_flags.h"
#include "coordinator/tokenizer/gguf_tokenizer.h"
#include "coordinator/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "",
          "Checkpoint directory: config.json plus *.safetensors "
          "(one file or shards with model.safetensors.index.json), or a deepseek2 GGUF file "
          "(tokenizer.json beside it for --prompt / --chat).");
ABSL_FLAG(std::string, prompt_ids, "", "Comma-separated prompt token ids, e.g. 100000,1234,42.");
ABSL_FLAG(std::string, prompt, "", "Prompt text (encoded with DIR/tokenizer.json, BOS added).");
ABSL_FLAG(std::string, chat, "", "One user message, formatted with the tokenizer's chat template.");
ABSL_FLAG(int, max_new_tokens, 16, "Tokens to generate after the prompt (greedy, argmax).");
ABSL_FLAG(int, threads, 0, "CPU threads (0: one per core; DSV2_NUM_THREADS also sets it).");
ABSL_FLAG(bool, stop_at_eos, true, "Stop when the model emits an eos_token_id of config.json.");

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "dsv2-generate: %s\n", msg.c_str());
  return 2;
}

int32_t Argmax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

// The prompt ids of --prompt or --chat, encoded with the model directory's tokenizer.
absl::StatusOr<std::vector<int32_t>> TextPrompt(const dsv2::Tokenizer& tok) {
  if (!absl::GetFlag(FLAGS_prompt).empty()) return tok.Encode(absl::GetFlag(FLAGS_prompt), true);
  absl::StatusOr<std::string> text =
      tok.ApplyChatTemplate({{"user", absl::GetFlag(FLAGS_chat)}}, /*add_generation_prompt=*/true);
  if (!text.ok()) return text.status();
  return tok.Encode(*text, /*add_special=*/false);  // the template wrote BOS itself
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv,
                   "Greedy generation with a DeepSeek-V2-family checkpoint on a GPU or the CPU.\n"
                   "  dsv2-generate --model DIR --prompt-ids 1,2,3 --max-new-tokens 16\n"
                   "  dsv2-generate --model DIR --prompt \"text\" | --chat \"user message\"");
  static constexpr dsv2::FlagRange kRanges[] = {
      {"max_new_tokens", 0, 1 << 24},
      {"threads", 0, 4096, "0: one per core"},
  };
  dsv2::ExitOnBadFlags("dsv2-generate", kRanges);
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) return Fail("--model DIR is required (see --help)");
  const bool has_text = !absl::GetFlag(FLAGS_prompt).empty();
  const bool has_chat = !absl::GetFlag(FLAGS_chat).empty();
  if (has_text + has_chat + !absl::GetFlag(FLAGS_prompt_ids).empty() > 1) {
    return Fail("give only one of --prompt, --chat and --prompt-ids");
  }
  std::unique_ptr<dsv2::Tokenizer> tokenizer;
  std::vector<int32_t> prompt;
  if (has_text || has_chat) {
    absl::StatusOr<std::unique_ptr<dsv2::Tokenizer>> tok = dsv2::LoadModelTokenizer(dir);
    if (!tok.ok() && tok.status().code() == absl::StatusCode::kNotFound) {
      return Fail(std::string(tok.status().message()) +
                  ": --prompt and --chat need a tokenizer (or use --prompt-ids)");
    }
    if (!tok.ok()) return Fail(std::string(tok.status().message()));
    tokenizer = *std::move(tok);
    absl::StatusOr<std::vector<int32_t>> ids = TextPrompt(*tokenizer);
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    prompt = *std::move(ids);
  }
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return Fail("--prompt-ids: '" + std::string(part) + "' is not an integer token id");
    }
    prompt.push_back(id);
  }
  if (prompt.empty()) return Fail("give --prompt-ids, --prompt or --chat (at least one token)");
  const int max_new = absl::GetFlag(FLAGS_max_new_tokens);
  if (max_new < 0) return Fail("--max-new-tokens must be >= 0");

  absl::StatusOr<dsv2::ModelPlacement> placement = dsv2::PlacementFromFlags();
  if (!placement.ok()) return Fail(std::string(placement.status().message()));
  const auto t_load = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<dsv2::DeepseekV2Model>> model =
      dsv2::DeepseekV2Model::Load(dir, {}, *placement);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  const dsv2::ModelConfig& config = (*model)->config();
  for (size_t i = 0; i < prompt.size(); ++i) {  // before any output: a bad id is one line
    if (prompt[i] < 0 || prompt[i] >= config.vocab_size) {
      return Fail(absl::StrCat("prompt token id ", prompt[i], " at index ", i, " is outside [0, ",
                               config.vocab_size, ") (the vocabulary of ", dir, ")"));
    }
  }
  dsv2::CpuContext cpu(absl::GetFlag(FLAGS_threads), dsv2::DetectCpuIsa(), (*model)->dtype());
  std::unique_ptr<dsv2::ExecContext> ctx =
      (*model)->cuda_context() != nullptr
          ? std::make_unique<dsv2::ExecContext>(*(*model)->cuda_context())
          : std::make_unique<dsv2::ExecContext>(cpu);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  std::fprintf(stderr, "loaded %s: %lld layers, %.2f GB of weights, %.2f s; %s, %d CPU threads\n",
               dir.c_str(), static_cast<long long>(config.num_hidden_layers),
               (*model)->weight_bytes() / 1e9, load_s, dsv2::DescribePlacement(**model).c_str(),
               cpu.num_threads());

  const int64_t total = static_cast<int64_t>(prompt.size()) + max_new;
  const int64_t page = 64;
  absl::StatusOr<dsv2::LatentKvCache> cache_or =
      (*model)->MakeCache((total + page - 1) / page, page);
  if (!cache_or.ok()) return Fail(std::string(cache_or.status().message()));
  dsv2::LatentKvCache& cache = *cache_or;
  const int64_t seq = cache.AddSequence();

  std::vector<float> logits;
  std::vector<int32_t> generated;
  std::optional<dsv2::IncrementalDetokenizer> detok;
  if (tokenizer) detok.emplace(*tokenizer, /*skip_special=*/true);
  std::vector<double> step_ms;
  dsv2::ForwardBatch batch;
  batch.Add(seq, 0, prompt);
  int64_t pos = 0;
  while (true) {
    const auto t0 = std::chrono::steady_clock::now();
    if (absl::Status s = (*model)->Forward(*ctx, cache, batch, &logits); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    step_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    pos += static_cast<int64_t>(batch.tokens.size());
    if (static_cast<int>(generated.size()) == max_new) break;
    const int32_t next = Argmax(logits.data(), config.vocab_size);
    generated.push_back(next);
    if (detok) {  // stream the text as it completes
      absl::StatusOr<std::string> piece = detok->Add(next);
      if (!piece.ok()) {  // e.g. an unused embedding row past the tokenizer's vocabulary
        std::fprintf(stderr, "[%s]", std::string(piece.status().message()).c_str());
        piece = std::string();
      }
      std::fputs(piece->c_str(), stdout);
      std::fflush(stdout);
    }
    const bool eos = std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), next) !=
                     config.eos_token_ids.end();
    if (static_cast<int>(generated.size()) == max_new ||
        (eos && absl::GetFlag(FLAGS_stop_at_eos))) {
      break;
    }
    batch = {};
    batch.Add(seq, pos, {next});
  }
  if (detok) {
    std::printf("%s\n", detok->Flush().c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "ids: %s\n", absl::StrJoin(generated, ",").c_str());
  } else {
    std::printf("%s\n", absl::StrJoin(generated, ",").c_str());
  }
  double decode_ms = 0;
  for (size_t i = 1; i < step_ms.size(); ++i) decode_ms += step_ms[i];
  const size_t decode_steps = step_ms.size() - 1;
  std::fprintf(stderr, "prefill: %zu tokens in %.1f ms (%.1f tokens/s)\n", prompt.size(),
               step_ms[0], prompt.size() * 1000.0 / step_ms[0]);
  if (decode_steps > 0) {
    std::fprintf(stderr, "decode: %zu tokens, %.2f ms/token (%.2f tokens/s)\n", decode_steps,
                 decode_ms / decode_steps, decode_steps * 1000.0 / decode_ms);
  }
  return 0;
}
