// model_bench: batch-1 decode and 512-token prefill of a checkpoint on the CPU, against the
// machine's read bandwidth measured in the same run over the same (resident) weight pages.
//   model_bench --model /tmp/v2lite-4l [--runs 5] [--json out.json]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "common/cli_flags.h"
#include "coordinator/model/deepseek_v2_model.h"

ABSL_FLAG(std::string, model, "", "Checkpoint directory (see dsv2-make-checkpoint).");
ABSL_FLAG(int, runs, 5, "Repetitions of each measurement; the table shows the median.");
ABSL_FLAG(int, decode_tokens, 32, "Tokens decoded per decode run (after a 16-token prompt).");
ABSL_FLAG(int, prefill_tokens, 512, "Prompt length of the prefill measurement.");
ABSL_FLAG(int, threads, 0, "CPU threads (0: one per core).");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) uint64_t SumWords(const uint64_t* p,
                                                                               int64_t n) {
  uint64_t s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += p[i];
  return s;
}

// Reads every byte of the mapped checkpoint with all threads; returns GB/s.
double ReadBandwidth(const dsv2::CpuContext& ctx, const dsv2::Checkpoint& ckpt, uint64_t* sink) {
  const auto t0 = Clock::now();
  int64_t bytes = 0;
  for (const auto& f : ckpt.files()) {
    // The data section: from the lowest tensor start to the highest tensor end.
    const uint8_t* lo = nullptr;
    const uint8_t* hi = nullptr;
    for (const auto& [name, t] : f->tensors()) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      if (lo == nullptr || p < lo) lo = p;
      if (hi == nullptr || p + t.nbytes > hi) hi = p + t.nbytes;
    }
    const auto* base = reinterpret_cast<const uint64_t*>(lo);  // 8-byte aligned by the writer
    const int64_t words = (hi - lo) / 8;
    const int64_t chunk = 1 << 16;  // 512 KB per task
    std::vector<uint64_t> partial((words + chunk - 1) / chunk, 0);
    ctx.ParallelFor(static_cast<int64_t>(partial.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        partial[i] = SumWords(base + i * chunk, std::min(chunk, words - i * chunk));
      }
    });
    for (uint64_t v : partial) *sink += v;
    bytes += words * 8;
  }
  return bytes / Seconds(t0, Clock::now()) / 1e9;
}

// Weight bytes one batch-1 decode step reads: every dense weight plus top_k routed experts,
// the router and the shared experts of each MoE layer, one embedding row and lm_head.
int64_t DecodeBytesPerToken(const dsv2::DeepseekV2Model& model) {
  const dsv2::ModelConfig& c = model.config();
  const dsv2::ModelWeights& w = model.weights();
  auto mlp = [](const dsv2::MlpWeights& m) {
    return m.gate.bytes() + m.up.bytes() + m.down.bytes();
  };
  int64_t bytes = w.embed.bytes() / c.vocab_size + w.lm_head.bytes();
  for (const dsv2::LayerWeights& L : w.layers) {
    const dsv2::AttentionWeights& a = L.attn;
    bytes += a.q_proj.bytes() + a.q_a_proj.bytes() + a.q_b_proj.bytes() + a.kv_a_proj.bytes() +
             a.kv_b_proj.bytes() + a.o_proj.bytes();
    if (!L.is_moe) {
      bytes += mlp(L.mlp);
    } else {
      bytes += L.moe.router.bytes() + c.num_experts_per_tok * mlp(L.moe.experts[0]);
      if (L.moe.has_shared) bytes += mlp(L.moe.shared);
    }
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv, "Decode/prefill benchmark of a checkpoint on the CPU.");
  const std::string dir = absl::GetFlag(FLAGS_model);
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  auto model_or = dsv2::DeepseekV2Model::Load(dir);
  if (!model_or.ok()) {
    std::fprintf(stderr, "model_bench: %s\n", std::string(model_or.status().message()).c_str());
    return 1;
  }
  const dsv2::DeepseekV2Model& model = **model_or;
  const dsv2::ModelConfig& c = model.config();
  dsv2::CpuContext ctx(absl::GetFlag(FLAGS_threads));
  const double ckpt_gb = model.checkpoint().total_bytes() / 1e9;
  std::fprintf(stderr, "model %s: %.2f GB, %lld layers; cpu %s x%d threads\n", dir.c_str(), ckpt_gb,
               static_cast<long long>(c.num_hidden_layers), dsv2::CpuIsaName(ctx.isa()),
               ctx.num_threads());

  // Bandwidth: the first pass also brings every page in; report the best later pass.
  uint64_t sink = 0;
  ReadBandwidth(ctx, model.checkpoint(), &sink);
  double bandwidth = 0;
  for (int r = 0; r < std::max(3, runs); ++r) {
    bandwidth = std::max(bandwidth, ReadBandwidth(ctx, model.checkpoint(), &sink));
  }

  const int decode_n = absl::GetFlag(FLAGS_decode_tokens);
  const int64_t prefill_n = absl::GetFlag(FLAGS_prefill_tokens);
  dsv2::LatentKvCache cache = model.MakeCache((prefill_n + decode_n + 16) / 64 + 2, 64);
  std::vector<float> logits;
  auto must = [](const absl::Status& s) {
    if (!s.ok()) {
      std::fprintf(stderr, "model_bench: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }
  };
  // Decode: 16-token prompt, then greedy tokens one at a time.
  std::vector<double> decode_ms;
  for (int r = 0; r < runs; ++r) {
    const int64_t seq = cache.AddSequence();
    dsv2::ForwardBatch batch;
    std::vector<int32_t> prompt(16);
    for (int i = 0; i < 16; ++i) prompt[i] = (1000 + 37 * i + r) % c.vocab_size;
    batch.Add(seq, 0, prompt);
    must(model.Forward(ctx, cache, batch, &logits));
    std::vector<double> steps;
    for (int t = 0; t < decode_n; ++t) {
      const int32_t next =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      batch = {};
      batch.Add(seq, 16 + t, {next});
      const auto t0 = Clock::now();
      must(model.Forward(ctx, cache, batch, &logits));
      steps.push_back(Seconds(t0, Clock::now()) * 1e3);
    }
    decode_ms.push_back(Median(steps));
    cache.FreeSequence(seq);
  }
  // Prefill: one forward over the whole prompt.
  std::vector<double> prefill_s;
  for (int r = 0; r < runs; ++r) {
    const int64_t seq = cache.AddSequence();
    std::vector<int32_t> prompt(prefill_n);
    for (int64_t i = 0; i < prefill_n; ++i) prompt[i] = (7 + 131 * i + r) % c.vocab_size;
    dsv2::ForwardBatch batch;
    batch.Add(seq, 0, prompt);
    const auto t0 = Clock::now();
    must(model.Forward(ctx, cache, batch, &logits));
    prefill_s.push_back(Seconds(t0, Clock::now()));
    cache.FreeSequence(seq);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_gb = ru.ru_maxrss * 1024.0 / 1e9;

  const double ms = Median(decode_ms);
  const double bytes_gb = DecodeBytesPerToken(model) / 1e9;
  const double decode_gbs = bytes_gb / (ms / 1e3);
  const double prefill_tps = prefill_n / Median(prefill_s);
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| read bandwidth (best of %d, all threads) | %.2f GB/s |\n", std::max(3, runs),
              bandwidth);
  std::printf("| decode batch 1 (median of %d runs x %d tokens) | %.2f ms/token, %.2f tokens/s |\n",
              runs, decode_n, ms, 1e3 / ms);
  std::printf("| weight bytes read per decode token | %.3f GB |\n", bytes_gb);
  std::printf("| decode effective bandwidth | %.2f GB/s = %.0f%% of measured |\n", decode_gbs,
              100 * decode_gbs / bandwidth);
  std::printf("| prefill %lld tokens (median of %d) | %.2f s, %.1f tokens/s |\n",
              static_cast<long long>(prefill_n), runs, Median(prefill_s), prefill_tps);
  std::printf("| peak RSS | %.2f GB = %.3f x checkpoint (%.2f GB) |\n", rss_gb, rss_gb / ckpt_gb,
              ckpt_gb);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << absl::StrFormat(
        "{\"model\": \"%s\", \"threads\": %d, \"isa\": \"%s\", \"read_bandwidth_gbs\": %.3f, "
        "\"decode_ms_per_token\": %.3f, \"decode_tokens_per_s\": %.3f, "
        "\"decode_bytes_per_token\": %.0f, \"decode_bandwidth_fraction\": %.4f, "
        "\"prefill_tokens\": %d, \"prefill_tokens_per_s\": %.2f, \"peak_rss_gb\": %.3f, "
        "\"checkpoint_gb\": %.3f, \"runs\": %d, \"sink\": %u}\n",
        dir, ctx.num_threads(), dsv2::CpuIsaName(ctx.isa()), bandwidth, ms, 1e3 / ms,
        bytes_gb * 1e9, decode_gbs / bandwidth, prefill_n, prefill_tps, rss_gb, ckpt_gb, runs,
        static_cast<unsigned>(sink & 1));
  }
  return 0;
}
