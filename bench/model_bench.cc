// model_bench: decode (batch 1 and larger batches) and prefill of a checkpoint, or of a
// synthetic full-size model, on the CPU or a GPU, against the memory bandwidth measured in the
// same run: the checkpoint's resident pages read by all threads (CPU) or a device-to-device
// copy (GPU).
//   model_bench --model /tmp/v2lite-4l [--runs 5] [--json out.json]
//   model_bench --synthetic v2-lite --device cuda --batch-sizes 1,32,128,256 --prefill-tokens 2048
//   model_bench --device cuda --bandwidth-only
//   model_bench --model /tmp/v2lite-4l --profile   (per-part times of a CPU decode step, prefill)
// On a GPU, decode is timed twice: as the server runs it (a CUDA graph per batch bucket,
// DecodeGraphs, with the logits summarised on the device: only the argmax and normaliser come
// back) and eagerly (Forward, every step's full logits copied to the host) beside it.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/model_profile.h"
#include "common/cli_flags.h"
#include "common/startup_checks.h"
#include "coordinator/model/decode_graphs.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/model/device_flags.h"

ABSL_FLAG(std::string, model, "",
          "Checkpoint directory (see dsv2-make-checkpoint) or a deepseek2 GGUF file.");
ABSL_FLAG(std::string, synthetic, "",
          "Instead of --model: a random-weight model created in place (v2-lite).");
ABSL_FLAG(int, runs, 5, "Repetitions of each measurement; the table shows the median.");
ABSL_FLAG(int, decode_tokens, 32, "Tokens decoded per decode run (after the --context prompt).");
ABSL_FLAG(int, context, 16,
          "Decode depth: each decode run's sequences start from a prompt of this many tokens "
          "(prefilled together, not timed), so decode reads that much latent cache.");
ABSL_FLAG(std::vector<std::string>, batch_sizes, std::vector<std::string>({"1"}),
          "Decode batch sizes (sequences decoding together), comma-separated.");
ABSL_FLAG(std::vector<std::string>, prefill_tokens, std::vector<std::string>({"512"}),
          "Prompt lengths of the prefill measurements, comma-separated (e.g. "
          "512,2048,8192,32768); each is one forward over the whole prompt.");
ABSL_FLAG(int, threads, 0, "CPU threads (0: one per core).");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(bool, graphs, true,
          "On a GPU, time decode as the server runs it (CUDA-graph replay, logits summarised on "
          "the device) as well as eagerly; ignored on the CPU.");
ABSL_FLAG(bool, profile, false,
          "Instead of the benchmark: the time of each part of a decode step (the first of "
          "--batch-sizes) and of a --prefill-tokens prefill, summed over layers, beside the "
          "weight bytes each reads (CPU only; --json writes the tables).");
ABSL_FLAG(bool, bandwidth_only, false,
          "Only measure the device's copy bandwidth (with --device cuda; no model is loaded).");

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
// The data section of each file of the model's checkpoint (safetensors or GGUF): from the
// lowest tensor start to the highest tensor end.
std::vector<std::pair<const uint8_t*, const uint8_t*>> DataSections(
    const dsv2::DeepseekV2Model& model) {
  std::vector<std::pair<const uint8_t*, const uint8_t*>> sections;
  auto add = [&](const auto& tensors) {
    const uint8_t* lo = nullptr;
    const uint8_t* hi = nullptr;
    for (const auto& [name, t] : tensors) {
      if (t.data == nullptr || t.nbytes <= 0) continue;
      const auto* p = static_cast<const uint8_t*>(t.data);
      if (lo == nullptr || p < lo) lo = p;
      if (hi == nullptr || p + t.nbytes > hi) hi = p + t.nbytes;
    }
    if (lo != nullptr) sections.emplace_back(lo, hi);
  };
  if (model.checkpoint() != nullptr) {
    for (const auto& f : model.checkpoint()->files()) add(f->tensors());
  }
  if (model.gguf() != nullptr) {
    for (const auto& f : model.gguf()->files()) add(f->tensors());
  }
  return sections;
}

double ReadBandwidth(const dsv2::CpuContext& ctx, const dsv2::DeepseekV2Model& model,
                     uint64_t* sink) {
  const auto t0 = Clock::now();
  int64_t bytes = 0;
  for (const auto& [lo, hi] : DataSections(model)) {
    const auto* base = reinterpret_cast<const uint64_t*>(lo);  // 8-byte aligned by the writers
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
             a.w_uk_t.bytes() + a.w_uv.bytes() + a.o_proj.bytes();
    if (!L.is_moe) {
      bytes += mlp(L.mlp);
    } else {
      bytes += L.moe.router.bytes() + c.num_experts_per_tok * mlp(L.moe.experts[0]);
      if (L.moe.has_shared) bytes += mlp(L.moe.shared);
    }
  }
  return bytes;
}

struct DecodeResult {
  int batch = 0;
  double ms_per_step = 0;  // median of the served path: graphed on a GPU, else eager
  double tokens_per_s = 0;
  double eager_ms_per_step = 0;  // median, eager Forward with full logits to the host
  bool graphed = false;
};

// --bandwidth-only: a device-to-device copy on a fresh context, best of `runs` (after one).
int BandwidthOnly(int runs, const std::string& json) {
  absl::StatusOr<dsv2::ModelPlacement> placement = dsv2::PlacementFromFlags();
  if (!placement.ok() || placement->device != dsv2::Device::kCuda) {
    std::fprintf(stderr, "model_bench: --bandwidth-only needs --device cuda (and a GPU)%s%s\n",
                 placement.ok() ? "" : ": ",
                 placement.ok() ? "" : std::string(placement.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<dsv2::CudaContext>> ctx =
      dsv2::CudaContext::Create({.device = placement->cuda_device, .act_dtype = placement->dtype});
  if (!ctx.ok()) {
    std::fprintf(stderr, "model_bench: %s\n", std::string(ctx.status().message()).c_str());
    return 1;
  }
  double best = 0;
  for (int r = 0; r <= std::max(3, runs); ++r) {
    absl::StatusOr<double> b = dsv2::MeasureCopyBandwidth(**ctx, int64_t{1} << 30);
    if (!b.ok()) {
      std::fprintf(stderr, "model_bench: %s\n", std::string(b.status().message()).c_str());
      return 1;
    }
    if (r > 0) best = std::max(best, *b);
  }
  std::printf("| device copy bandwidth (%s, best of %d) | %.1f GB/s |\n",
              (*ctx)->info().name.c_str(), std::max(3, runs), best);
  if (!json.empty()) {
    std::ofstream(json) << absl::StrFormat("{\"device\": \"%s\", \"bandwidth_gbs\": %.3f}\n",
                                           (*ctx)->info().name, best);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv, "Decode/prefill benchmark of a checkpoint on the CPU or a GPU.");
  static constexpr dsv2::FlagRange kRanges[] = {
      {"runs", 1, 1000},
      {"decode_tokens", 2, 1 << 16},
      {"context", 1, 1 << 20},
      {"threads", 0, 4096, "0: one per core"},
  };
  dsv2::ExitOnBadFlags("model_bench", kRanges);
  const std::string dir = absl::GetFlag(FLAGS_model);
  const std::string synthetic = absl::GetFlag(FLAGS_synthetic);
  const int runs = absl::GetFlag(FLAGS_runs);  // >= 1: checked above
  if (absl::GetFlag(FLAGS_bandwidth_only)) return BandwidthOnly(runs, absl::GetFlag(FLAGS_json));
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "model_bench: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  };
  auto must = [&](const absl::Status& s) {
    if (!s.ok()) fail(s);
  };
  if (dir.empty() == synthetic.empty())
    fail(absl::InvalidArgumentError("give --model or --synthetic"));
  if (!synthetic.empty() && synthetic != "v2-lite") {
    fail(absl::InvalidArgumentError("--synthetic: only v2-lite is known"));
  }
  std::vector<int> batches;
  for (const std::string& b : absl::GetFlag(FLAGS_batch_sizes)) {
    int v = 0;
    if (!absl::SimpleAtoi(b, &v) || v < 1 || v > 4096) {
      fail(absl::InvalidArgumentError(
          absl::StrCat("--batch-sizes: '", b, "' is not a batch size in [1, 4096]")));
    }
    batches.push_back(v);
  }
  std::vector<int64_t> prefill_lengths;
  for (const std::string& n : absl::GetFlag(FLAGS_prefill_tokens)) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(n, &v) || v < 1 || v > (1 << 20)) {
      fail(absl::InvalidArgumentError(
          absl::StrCat("--prefill-tokens: '", n, "' is not a prompt length in [1, 1048576]")));
    }
    prefill_lengths.push_back(v);
  }
  if (prefill_lengths.empty()) fail(absl::InvalidArgumentError("--prefill-tokens: no length"));
  const int64_t context = absl::GetFlag(FLAGS_context);
  absl::StatusOr<dsv2::ModelPlacement> placement = dsv2::PlacementFromFlags();
  must(placement.status());
  auto model_or = synthetic.empty() ? dsv2::DeepseekV2Model::Load(dir, {}, *placement)
                                    : dsv2::DeepseekV2Model::Synthetic(
                                          dsv2::ModelConfig::DeepSeekV2Lite(), *placement);
  must(model_or.status());
  const dsv2::DeepseekV2Model& model = **model_or;
  const dsv2::ModelConfig& c = model.config();
  dsv2::CpuContext cpu(absl::GetFlag(FLAGS_threads), dsv2::DetectCpuIsa(), model.dtype());
  std::unique_ptr<dsv2::ExecContext> ctx =
      model.cuda_context() ? std::make_unique<dsv2::ExecContext>(*model.cuda_context())
                           : std::make_unique<dsv2::ExecContext>(cpu);
  const double weights_gb = model.weight_bytes() / 1e9;
  const std::string where = dsv2::DescribePlacement(model);
  std::fprintf(stderr, "model %s: %.2f GB of weights, %lld layers; %s, %d CPU threads\n",
               synthetic.empty() ? dir.c_str() : synthetic.c_str(), weights_gb,
               static_cast<long long>(c.num_hidden_layers), where.c_str(), cpu.num_threads());

  // Bandwidth: CPU, the checkpoint pages read by all threads (the first pass brings them in);
  // GPU, a device-to-device copy. The best of several passes.
  uint64_t sink = 0;
  double bandwidth = 0;
  for (int r = 0; r < std::max(3, runs) + 1; ++r) {
    double gbs = 0;
    if (model.cuda_context() != nullptr) {
      absl::StatusOr<double> b =
          dsv2::MeasureCopyBandwidth(*model.cuda_context(), int64_t{1} << 30);
      must(b.status());
      gbs = *b;
    } else if (model.checkpoint() != nullptr || model.gguf() != nullptr) {
      gbs = ReadBandwidth(cpu, model, &sink);
    }
    if (r > 0) bandwidth = std::max(bandwidth, gbs);
  }

  // The profile after the bandwidth passes, which bring every page of the checkpoint in (as the
  // benchmark below runs): a first touch of an expert's pages in a step is a page fault there.
  if (absl::GetFlag(FLAGS_profile)) {
    must(dsv2::RunProfile(model, cpu,
                          {.batch = batches[0],
                           .decode_tokens = absl::GetFlag(FLAGS_decode_tokens),
                           .context = context,
                           .prefill_tokens = prefill_lengths,
                           .json = absl::GetFlag(FLAGS_json)}));
    return 0;
  }

  const int decode_n = absl::GetFlag(FLAGS_decode_tokens);
  const int64_t longest = *std::max_element(prefill_lengths.begin(), prefill_lengths.end());
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int64_t pages = max_batch * ((context + decode_n + 63) / 64) + (longest + 63) / 64 + 2;
  absl::StatusOr<dsv2::LatentKvCache> cache_or = model.MakeCache(pages, 64);
  must(cache_or.status());
  dsv2::LatentKvCache& cache = *cache_or;
  std::vector<float> logits;
  auto argmax = [&](int64_t row) {
    const float* v = logits.data() + row * c.vocab_size;
    return static_cast<int32_t>(std::max_element(v, v + c.vocab_size) - v);
  };
  // Decode: B sequences with `context`-token prompts (prefilled together), then one token each
  // per step.
  // On a GPU each run decodes the same steps twice: graphed with summaries, then eagerly.
  std::unique_ptr<dsv2::DecodeGraphs> graphs;
  if (model.cuda_context() != nullptr && absl::GetFlag(FLAGS_graphs)) {
    absl::StatusOr<std::unique_ptr<dsv2::DecodeGraphs>> g =
        dsv2::DecodeGraphs::Create(model, cpu,
                                   {.max_context = static_cast<int>(context) + decode_n + 64,
                                    .max_batch = max_batch,
                                    .capture = true});
    must(g.status());
    graphs = *std::move(g);
  }
  std::vector<DecodeResult> decode;
  for (int b : batches) {
    std::vector<double> eager_ms, graph_ms;
    for (int r = 0; r < runs; ++r) {
      for (int mode = graphs != nullptr ? 0 : 1; mode < 2; ++mode) {  // 0: graphed, 1: eager
        std::vector<int64_t> seqs;
        dsv2::ForwardBatch batch;
        for (int s = 0; s < b; ++s) {
          seqs.push_back(cache.AddSequence());
          std::vector<int32_t> prompt(context);
          for (int64_t i = 0; i < context; ++i) {
            prompt[i] = static_cast<int32_t>((1000 + 37 * i + 101 * s + r) % c.vocab_size);
          }
          batch.Add(seqs.back(), 0, prompt);
        }
        must(model.Forward(*ctx, cache, batch, &logits));
        std::vector<int32_t> next_ids(b);
        for (int s = 0; s < b; ++s) next_ids[s] = argmax(s);
        dsv2::LogitsRequest request;
        request.summarize.assign(b, 1);
        dsv2::LogitsResult result;
        for (int t = 0; t < decode_n; ++t) {
          dsv2::ForwardBatch next;
          for (int s = 0; s < b; ++s)
            next.Add(seqs[s], static_cast<int32_t>(context + t), {next_ids[s]});
          const auto t0 = Clock::now();
          if (mode == 0) {
            must(graphs->Forward(cache, next, request, &result));
          } else {
            must(model.Forward(*ctx, cache, next, &logits));
          }
          const double ms = Seconds(t0, Clock::now()) * 1e3;
          // The first step warms up (and captures the bucket's graph).
          if (t > 0) (mode == 0 ? graph_ms : eager_ms).push_back(ms);
          for (int s = 0; s < b; ++s) {
            next_ids[s] = mode == 0 ? result.summaries[s].argmax : argmax(s);
          }
        }
        for (int64_t s : seqs) cache.FreeSequence(s);
      }
    }
    DecodeResult d;
    d.batch = b;
    d.eager_ms_per_step = Median(eager_ms);
    d.graphed = !graph_ms.empty();
    d.ms_per_step = d.graphed ? Median(graph_ms) : d.eager_ms_per_step;
    d.tokens_per_s = b * 1e3 / d.ms_per_step;
    decode.push_back(d);
  }
  // Prefill: per length, one forward over the whole prompt (one warm-up run first).
  std::vector<double> prefill_median_s;
  for (const int64_t n : prefill_lengths) {
    std::vector<double> prefill_s;
    for (int r = 0; r <= runs; ++r) {
      const int64_t seq = cache.AddSequence();
      std::vector<int32_t> prompt(n);
      for (int64_t i = 0; i < n; ++i)
        prompt[i] = static_cast<int32_t>((7 + 131 * i + r) % c.vocab_size);
      dsv2::ForwardBatch batch;
      batch.Add(seq, 0, prompt);
      const auto t0 = Clock::now();
      must(model.Forward(*ctx, cache, batch, &logits));
      if (r > 0) prefill_s.push_back(Seconds(t0, Clock::now()));
      cache.FreeSequence(seq);
    }
    prefill_median_s.push_back(Median(prefill_s));
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_gb = ru.ru_maxrss * 1024.0 / 1e9;

  const double bytes_gb = DecodeBytesPerToken(model) / 1e9;
  const double ms = decode[0].ms_per_step;
  const double decode_gbs = bytes_gb / (ms / 1e3);
  const double prefill_tps = prefill_lengths[0] / prefill_median_s[0];
  const std::string depth = context == 16 ? "" : absl::StrCat(" at depth ", context);
  std::printf("| measure (%s) | value |\n|---|---|\n", where.c_str());
  std::printf("| %s bandwidth (best of %d) | %.2f GB/s |\n",
              model.cuda_context() ? "device copy" : "read", std::max(3, runs), bandwidth);
  for (const DecodeResult& d : decode) {
    std::printf(
        "| decode batch %d%s%s (median of %d runs x %d steps) | %.2f ms/step, %.1f tokens/s |\n",
        d.batch, depth.c_str(), d.graphed ? ", graphed + summaries" : "", runs, decode_n - 1,
        d.ms_per_step, d.tokens_per_s);
    if (d.graphed) {
      std::printf("| decode batch %d, eager + full logits | %.2f ms/step, %.1f tokens/s |\n",
                  d.batch, d.eager_ms_per_step, d.batch * 1e3 / d.eager_ms_per_step);
    }
  }
  std::printf("| weight bytes read per decode step (batch %d) | %.3f GB |\n", decode[0].batch,
              bytes_gb);
  std::printf("| decode effective bandwidth (batch %d) | %.2f GB/s = %.0f%% of measured |\n",
              decode[0].batch, decode_gbs, bandwidth > 0 ? 100 * decode_gbs / bandwidth : 0.0);
  std::vector<std::string> prefill_rows;
  for (size_t i = 0; i < prefill_lengths.size(); ++i) {
    const int64_t n = prefill_lengths[i];
    std::printf("| prefill %lld tokens (median of %d) | %.3f s, %.1f tokens/s |\n",
                static_cast<long long>(n), runs, prefill_median_s[i], n / prefill_median_s[i]);
    prefill_rows.push_back(
        absl::StrFormat("{\"tokens\": %d, \"seconds\": %.4f, \"tokens_per_s\": %.2f}", n,
                        prefill_median_s[i], n / prefill_median_s[i]));
  }
  std::printf("| peak RSS | %.2f GB (weights %.2f GB) |\n", rss_gb, weights_gb);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::vector<std::string> rows;
    for (const DecodeResult& d : decode) {
      rows.push_back(absl::StrFormat(
          "{\"batch\": %d, \"ms_per_step\": %.4f, \"tokens_per_s\": %.2f, \"graphed\": %s, "
          "\"eager_ms_per_step\": %.4f, \"eager_tokens_per_s\": %.2f}",
          d.batch, d.ms_per_step, d.tokens_per_s, d.graphed ? "true" : "false", d.eager_ms_per_step,
          d.batch * 1e3 / d.eager_ms_per_step));
    }
    std::ofstream(path) << absl::StrFormat(
        "{\"model\": \"%s\", \"device\": \"%s\", \"threads\": %d, \"bandwidth_gbs\": %.3f, "
        "\"decode\": [%s], \"decode_ms_per_token\": %.4f, \"decode_bytes_per_token\": %.0f, "
        "\"decode_bandwidth_fraction\": %.4f, \"context\": %d, \"prefill_tokens\": %d, "
        "\"prefill_tokens_per_s\": %.2f, \"prefill\": [%s], \"peak_rss_gb\": %.3f, "
        "\"weights_gb\": %.3f, "
        "\"runs\": %d, \"sink\": %u}\n",
        synthetic.empty() ? dir : synthetic, where, cpu.num_threads(), bandwidth,
        absl::StrJoin(rows, ", "), ms, bytes_gb * 1e9, bandwidth > 0 ? decode_gbs / bandwidth : 0.0,
        context, prefill_lengths[0], prefill_tps, absl::StrJoin(prefill_rows, ", "), rss_gb,
        weights_gb, runs, static_cast<unsigned>(sink & 1));
  }
  return 0;
}
