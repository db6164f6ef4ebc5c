// tokenizer_bench: Encode throughput (MB/s, one thread) of a tokenizer.json over a text file,
// and the time Tokenizer::Load takes (reading and parsing tokenizer.json, building the BPE).
//   tokenizer_bench --tokenizer DIR --text FILE [--runs 7] [--mode load,whole,lines] [--json OUT]
// Prints one table row per mode and, with --json, writes the numbers. The median of the runs
// counts; the BPE cache is warmed by one untimed run first (as HF's is in a long-lived process).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/cli_flags.h"
#include "common/startup_checks.h"
#include "coordinator/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "", "Directory with tokenizer.json (and tokenizer_config.json).");
ABSL_FLAG(std::string, text, "", "UTF-8 text file to encode.");
ABSL_FLAG(int, runs, 7, "Timed runs; the median is reported.");
ABSL_FLAG(std::string, mode, "whole,lines",
          "Comma-separated: load (Tokenizer::Load of --tokenizer, --runs times), whole (one "
          "Encode of the file) and/or lines (one Encode per line).");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");

namespace {

double Median(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Tokenizer::Load of `dir`, `runs` times after one untimed run (the file in the page cache).
double MedianLoadSeconds(const std::string& dir, int runs) {
  std::vector<double> times;
  for (int r = -1; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    auto tok = dsv2::Tokenizer::Load(dir);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!tok.ok()) {
      std::fprintf(stderr, "load failed: %s\n", std::string(tok.status().message()).c_str());
      std::exit(1);
    }
    if (r >= 0) times.push_back(s);
  }
  return Median(times);
}

double MedianSeconds(const std::vector<std::string>& inputs, const dsv2::Tokenizer& tok, int runs,
                     size_t* tokens) {
  std::vector<double> times;
  for (int r = -1; r < runs; ++r) {  // r == -1: warm-up
    size_t n = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::string& s : inputs) {
      absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(s, false);
      if (!ids.ok()) {
        std::fprintf(stderr, "encode failed: %s\n", std::string(ids.status().message()).c_str());
        std::exit(1);
      }
      n += ids->size();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r >= 0) times.push_back(s);
    *tokens = n;
  }
  return Median(times);
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv,
                   "Encode throughput (MB/s, one thread) of a tokenizer.json over a text file.\n"
                   "  tokenizer_bench --tokenizer DIR --text FILE [--runs 7] [--mode whole,lines] "
                   "[--json OUT]");
  static constexpr dsv2::FlagRange kRanges[] = {
      {"runs", 1, 1000},
  };
  dsv2::ExitOnBadFlags("tokenizer_bench", kRanges);
  auto tok = dsv2::Tokenizer::Load(absl::GetFlag(FLAGS_tokenizer));
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(tok.status().message()).c_str());
    return 2;
  }
  std::ifstream in(absl::GetFlag(FLAGS_text), std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "tokenizer_bench: --text %s: cannot read it\n",
                 absl::GetFlag(FLAGS_text).c_str());
    return 2;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  std::string json = "{\"bytes\": " + std::to_string(text.size()) + ", \"results\": [";
  bool first = true;
  for (absl::string_view mode : absl::StrSplit(absl::GetFlag(FLAGS_mode), ',')) {
    std::vector<std::string> inputs;
    if (mode == "load") {
      const double s = MedianLoadSeconds(absl::GetFlag(FLAGS_tokenizer), absl::GetFlag(FLAGS_runs));
      std::printf("dsv2  load   %8.1f ms  (Tokenizer::Load, median of %d)\n", s * 1e3,
                  absl::GetFlag(FLAGS_runs));
      json += std::string(first ? "" : ", ") +
              "{\"mode\": \"load\", \"seconds\": " + std::to_string(s) + "}";
      first = false;
      continue;
    }
    if (mode == "whole") {
      inputs.push_back(text);
    } else if (mode == "lines") {
      for (absl::string_view line : absl::StrSplit(text, '\n')) inputs.emplace_back(line);
    } else {
      std::fprintf(stderr, "tokenizer_bench: --mode: unknown mode '%s' (load, whole or lines)\n",
                   std::string(mode).c_str());
      return 2;
    }
    size_t tokens = 0;
    const double s = MedianSeconds(inputs, **tok, absl::GetFlag(FLAGS_runs), &tokens);
    const double mbs = text.size() / 1e6 / s;
    std::printf("dsv2  %-6s %8.2f MB/s  %9zu tokens  %8.1f ms\n", std::string(mode).c_str(), mbs,
                tokens, s * 1e3);
    json += std::string(first ? "" : ", ") + "{\"mode\": \"" + std::string(mode) +
            "\", \"mb_per_s\": " + std::to_string(mbs) + ", \"tokens\": " + std::to_string(tokens) +
            "}";
    first = false;
  }
  json += "]}\n";
  if (!absl::GetFlag(FLAGS_json).empty()) std::ofstream(absl::GetFlag(FLAGS_json)) << json;
  return 0;
}
