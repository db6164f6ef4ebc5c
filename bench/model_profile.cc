#include "bench/model_profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/op_profile.h"

namespace dsv2 {
namespace {

using Clock = std::chrono::steady_clock;

// One profiled phase: the parts' sums over `steps` forward calls, and the calls' wall time.
struct PhaseProfile {
  std::string name;
  int steps = 0;
  int64_t tokens_per_step = 0;
  double wall_seconds = 0;
  OpProfile parts;
};

// Prints the table; returns its JSON object.
std::string Report(const PhaseProfile& p) {
  const double per = 1e3 / p.steps;  // seconds summed over steps -> ms per step
  std::printf(
      "\n| %s: part (%d steps, %lld tokens each) | ms/step | share | MB read/step | GB/s |\n",
      p.name.c_str(), p.steps, static_cast<long long>(p.tokens_per_step));
  std::printf("|---|---|---|---|---|\n");
  std::vector<std::string> rows;
  auto row = [&](const std::string& name, double seconds, int64_t bytes, int64_t calls) {
    const double ms = seconds * per;
    const double mb = bytes / 1e6 / p.steps;
    std::printf(
        "| %s | %.3f | %.1f%% | %s | %s |\n", name.c_str(), ms, 100 * seconds / p.wall_seconds,
        bytes > 0 ? absl::StrFormat("%.1f", mb).c_str() : "",
        bytes > 0 && seconds > 0 ? absl::StrFormat("%.1f", bytes / seconds / 1e9).c_str() : "");
    rows.push_back(absl::StrFormat(
        "{\"part\": \"%s\", \"ms_per_step\": %.4f, \"bytes_per_step\": %.0f, \"calls\": %lld}",
        name, ms, static_cast<double>(bytes) / p.steps, static_cast<long long>(calls)));
  };
  int64_t bytes = 0;
  for (const OpProfile::Entry& e : p.parts.entries()) {
    row(e.name, e.seconds, e.bytes, e.calls);
    bytes += e.bytes;
  }
  row("other (step set-up, logits copy, outside the parts)",
      p.wall_seconds - p.parts.total_seconds(), 0, p.steps);
  std::printf("| **step** | **%.3f** | 100%% | **%.1f** | **%.1f** |\n", p.wall_seconds * per,
              bytes / 1e6 / p.steps, bytes / p.wall_seconds / 1e9);
  return absl::StrFormat(
      "{\"phase\": \"%s\", \"steps\": %d, \"tokens_per_step\": %lld, \"ms_per_step\": %.4f, "
      "\"parts\": [%s]}",
      p.name, p.steps, static_cast<long long>(p.tokens_per_step), p.wall_seconds * per,
      absl::StrJoin(rows, ", "));
}

}  // namespace

absl::Status RunProfile(const DeepseekV2Model& model, const CpuContext& cpu,
                        const ProfileRunArgs& args) {
  if (model.cuda_context() != nullptr) {
    return absl::InvalidArgumentError(
        "--profile runs on the CPU only (a GPU op returns before its kernel ends)");
  }
  const ModelConfig& c = model.config();
  ExecContext ctx(cpu);
  const int64_t longest = *std::max_element(args.prefill_tokens.begin(), args.prefill_tokens.end());
  const int64_t pages =
      args.batch * ((args.context + args.decode_tokens + 63) / 64) + (longest + 63) / 64 + 2;
  DSV2_ASSIGN_OR_RETURN(LatentKvCache cache, model.MakeCache(pages, 64));
  std::vector<float> logits;

  // Decode: `batch` sequences with `context`-token prompts, then one token each per step; the
  // first step warms up and is not counted.
  std::vector<PhaseProfile> phases(1);
  PhaseProfile& decode = phases[0];
  decode.name = absl::StrCat("decode batch ", args.batch, " at depth ", args.context);
  decode.tokens_per_step = args.batch;
  std::vector<int64_t> seqs;
  ForwardBatch prompt_batch;
  for (int s = 0; s < args.batch; ++s) {
    seqs.push_back(cache.AddSequence());
    std::vector<int32_t> prompt(args.context);
    for (int64_t i = 0; i < args.context; ++i) {
      prompt[i] = static_cast<int32_t>((1000 + 37 * i + 101 * s) % c.vocab_size);
    }
    prompt_batch.Add(seqs.back(), 0, prompt);
  }
  DSV2_RETURN_IF_ERROR(model.Forward(ctx, cache, prompt_batch, &logits));
  for (int t = 0; t < args.decode_tokens; ++t) {
    ForwardBatch next;
    for (int s = 0; s < args.batch; ++s) {
      next.Add(seqs[s], static_cast<int32_t>(args.context + t),
               {static_cast<int32_t>((7 * t + s) % c.vocab_size)});
    }
    ctx.set_profile(t > 0 ? &decode.parts : nullptr);
    const auto t0 = Clock::now();
    DSV2_RETURN_IF_ERROR(model.Forward(ctx, cache, next, &logits));
    if (t > 0) {
      decode.wall_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      ++decode.steps;
    }
  }
  ctx.set_profile(nullptr);
  for (int64_t s : seqs) cache.FreeSequence(s);

  // Prefill: per length, one warm-up forward, then one profiled.
  for (const int64_t n : args.prefill_tokens) {
    PhaseProfile& prefill = phases.emplace_back();
    prefill.name = absl::StrCat("prefill ", n);
    prefill.tokens_per_step = n;
    for (int r = 0; r < 2; ++r) {
      const int64_t seq = cache.AddSequence();
      std::vector<int32_t> prompt(n);
      for (int64_t i = 0; i < n; ++i)
        prompt[i] = static_cast<int32_t>((7 + 131 * i + r) % c.vocab_size);
      ForwardBatch batch;
      batch.Add(seq, 0, prompt);
      ctx.set_profile(r == 1 ? &prefill.parts : nullptr);
      const auto t0 = Clock::now();
      DSV2_RETURN_IF_ERROR(model.Forward(ctx, cache, batch, &logits));
      if (r == 1) {
        prefill.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        prefill.steps = 1;
      }
      ctx.set_profile(nullptr);
      cache.FreeSequence(seq);
    }
  }

  std::printf("\nProfile on the CPU (%s, %d threads); each part's wall time summed over layers.\n",
              CpuIsaName(cpu.isa()), cpu.num_threads());
  std::vector<std::string> reports;  // printed in this order
  for (const PhaseProfile& p : phases) reports.push_back(Report(p));
  const std::string json = absl::StrCat("{\"profile\": [", absl::StrJoin(reports, ", "), "]}\n");
  if (!args.json.empty()) {
    std::ofstream out(args.json);
    out << json;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", args.json));
  }
  return absl::OkStatus();
}

}  // namespace dsv2
