// load_generator: concurrent streaming Generate requests against a running dsv2-coordinator.
// Token-id prompts of a given length, a fixed number of new tokens (ignore_eos, greedy), at
// several concurrency levels in one invocation. Reports output tokens/s, time to first token
// and inter-token latency (p50/p99), measured client-side from the arrival times of the stream's
// messages, as a markdown table on stdout and as JSON.
//   load_generator --server 127.0.0.1:50051 --concurrency 1,8,32 --requests 32
//                  --prompt-len 64 --max-new-tokens 32 --json load.json
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/http_stream_client.h"
#include "common/cli_flags.h"
#include "common/startup_checks.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "The server, host:port.");
ABSL_FLAG(std::string, http, "",
          "Send the requests to the OpenAI-compatible HTTP API at host:port instead (streamed "
          "/v1/completions with the same token-id prompts); --server still answers GetModelInfo.");
ABSL_FLAG(std::string, model_name, "",
          "With --http: the model id (empty: the first of /v1/models).");
ABSL_FLAG(std::vector<std::string>, concurrency, std::vector<std::string>({"1", "8", "32"}),
          "Concurrency levels (requests in flight), run one after the other.");
ABSL_FLAG(std::vector<std::string>, requests, std::vector<std::string>({"0"}),
          "Requests per level: one number for every level or one per level (0: 4 x the "
          "concurrency, or unlimited when --duration is set).");
ABSL_FLAG(double, duration, 0,
          "Seconds per level after which no new request starts (0: no limit); in-flight "
          "requests finish.");
ABSL_FLAG(int, prompt_len, 64, "Prompt length in tokens (random ids).");
ABSL_FLAG(int, max_new_tokens, 32, "Tokens generated per request (ignore_eos, greedy).");
ABSL_FLAG(int, warmup, 2, "Unmeasured requests, one at a time, before the first level.");
ABSL_FLAG(double, request_timeout, 600, "Deadline of one request in seconds.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the prompt token ids.");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file too.");

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = dsv2::v1;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct RequestResult {
  bool ok = false;
  std::string error;
  int64_t tokens = 0;
  double ttft_ms = 0;
  double latency_ms = 0;
  std::vector<double> itl_ms;  // one per token after the first
};

struct LevelResult {
  int concurrency = 0;
  int requests = 0;
  int errors = 0;
  std::string first_error;
  int64_t tokens = 0;
  double wall_s = 0;
  std::vector<double> ttft_ms, itl_ms, latency_ms;
};

// Linear interpolation between the closest ranks; 0 for no samples.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

// The text as a JSON string literal's contents.
std::string JsonEscape(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

v1::GenerateRequest MakeRequest(uint64_t seed, int64_t vocab) {
  v1::GenerateRequest r;
  std::mt19937_64 rng(seed);
  // Skip the lowest ids (special and byte tokens in most vocabularies).
  const int64_t lo = std::min<int64_t>(256, vocab / 2);
  std::uniform_int_distribution<int64_t> id(lo, vocab - 1);
  for (int i = 0; i < absl::GetFlag(FLAGS_prompt_len); ++i) {
    r.mutable_token_ids()->add_ids(static_cast<int32_t>(id(rng)));
  }
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stopping()->set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

// The same request through the HTTP API (bench/http_stream_client.h).
RequestResult RunOneHttp(const v1::GenerateRequest& request) {
  const std::string target = absl::GetFlag(FLAGS_http);
  const size_t colon = target.rfind(':');
  std::string ids = absl::StrJoin(request.token_ids().ids(), ",");
  const std::string body =
      absl::StrCat(R"({"model":")", absl::GetFlag(FLAGS_model_name), R"(","prompt":[)", ids,
                   R"(],"max_tokens":)", request.stopping().max_new_tokens(),
                   R"(,"temperature":0,"ignore_eos":true,"stream":true})");
  const dsv2::HttpStreamResult h =
      dsv2::StreamCompletion(target.substr(0, colon), std::stoi(target.substr(colon + 1)), body,
                             absl::GetFlag(FLAGS_request_timeout));
  RequestResult out;
  out.ok = h.ok;
  out.error = h.error;
  out.tokens = h.tokens;
  out.ttft_ms = h.ttft_ms;
  out.itl_ms = h.itl_ms;
  out.latency_ms = h.latency_ms;
  if (out.ok && out.tokens != absl::GetFlag(FLAGS_max_new_tokens)) {
    out.ok = false;
    out.error =
        absl::StrCat("got ", out.tokens, " tokens, expected ", absl::GetFlag(FLAGS_max_new_tokens));
  }
  return out;
}

RequestResult RunOne(v1::Inference::Stub* stub, const v1::GenerateRequest& request) {
  if (!absl::GetFlag(FLAGS_http).empty()) return RunOneHttp(request);
  RequestResult out;
  grpc::ClientContext context;
  context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_request_timeout) * 1000)));
  const Clock::time_point start = Clock::now();
  Clock::time_point previous = start;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    const Clock::time_point now = Clock::now();
    const int n = response.token_ids_size();
    if (n == 0) continue;
    if (out.tokens == 0) {
      out.ttft_ms = Ms(now - start);
      // Tokens that arrive together with the first share its gap: none to record.
    } else {
      // A message with n tokens: n gaps of (now - previous) / n each.
      for (int i = 0; i < n; ++i) out.itl_ms.push_back(Ms(now - previous) / n);
    }
    previous = now;
    out.tokens += n;
  }
  const grpc::Status status = reader->Finish();
  out.latency_ms = Ms(Clock::now() - start);
  out.ok = status.ok();
  if (!status.ok()) out.error = absl::StrCat(status.error_code(), ": ", status.error_message());
  if (out.ok && out.tokens != absl::GetFlag(FLAGS_max_new_tokens)) {
    out.ok = false;
    out.error =
        absl::StrCat("got ", out.tokens, " tokens, expected ", absl::GetFlag(FLAGS_max_new_tokens));
  }
  return out;
}

LevelResult RunLevel(v1::Inference::Stub* stub, int concurrency, int limit, int64_t vocab,
                     int level_index) {
  const double duration = absl::GetFlag(FLAGS_duration);
  if (limit == 0 && duration <= 0) limit = 4 * concurrency;
  LevelResult level;
  level.concurrency = concurrency;
  std::atomic<int> issued{0};
  std::mutex mu;
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_issuing =
      duration > 0 ? start + std::chrono::milliseconds(static_cast<int64_t>(duration * 1000))
                   : Clock::time_point::max();
  auto worker = [&] {
    while (true) {
      const int k = issued++;
      if ((limit > 0 && k >= limit) || Clock::now() >= stop_issuing) return;
      const uint64_t seed = absl::GetFlag(FLAGS_seed) * 1'000'003 + level_index * 100'000 + k;
      RequestResult r = RunOne(stub, MakeRequest(seed, vocab));
      std::lock_guard<std::mutex> lock(mu);
      ++level.requests;
      if (!r.ok) {
        if (level.errors++ == 0) level.first_error = r.error;
        continue;
      }
      level.tokens += r.tokens;
      level.ttft_ms.push_back(r.ttft_ms);
      level.latency_ms.push_back(r.latency_ms);
      level.itl_ms.insert(level.itl_ms.end(), r.itl_ms.begin(), r.itl_ms.end());
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  level.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  return level;
}

std::string Row(const LevelResult& l) {
  return absl::StrFormat("| %d | %d | %.1f | %.2f | %.0f | %.0f | %.1f | %.1f | %.0f | %d |",
                         l.concurrency, l.requests, l.tokens / l.wall_s, l.requests / l.wall_s,
                         Percentile(l.ttft_ms, 50), Percentile(l.ttft_ms, 99),
                         Percentile(l.itl_ms, 50), Percentile(l.itl_ms, 99),
                         Percentile(l.latency_ms, 50), l.errors);
}

std::string Json(const v1::ModelInfo& info, const std::vector<LevelResult>& levels) {
  std::vector<std::string> rows;
  for (const LevelResult& l : levels) {
    rows.push_back(absl::StrFormat(
        "    {\"concurrency\": %d, \"requests\": %d, \"errors\": %d, \"output_tokens\": %d, "
        "\"wall_s\": %.3f, \"output_tokens_per_s\": %.2f, \"requests_per_s\": %.3f, "
        "\"ttft_ms\": {\"p50\": %.2f, \"p99\": %.2f, \"mean\": %.2f}, "
        "\"itl_ms\": {\"p50\": %.2f, \"p99\": %.2f}, \"latency_ms\": {\"p50\": %.2f, "
        "\"p99\": %.2f}}",
        l.concurrency, l.requests, l.errors, l.tokens, l.wall_s, l.tokens / l.wall_s,
        l.requests / l.wall_s, Percentile(l.ttft_ms, 50), Percentile(l.ttft_ms, 99),
        Mean(l.ttft_ms), Percentile(l.itl_ms, 50), Percentile(l.itl_ms, 99),
        Percentile(l.latency_ms, 50), Percentile(l.latency_ms, 99)));
  }
  return absl::StrFormat(
      "{\n  \"benchmark\": \"load_generator\",\n  \"server\": \"%s\",\n  \"model_path\": \"%s\",\n"
      "  \"num_layers\": %d,\n  \"device\": \"%s\",\n  \"prompt_len\": %d,\n"
      "  \"max_new_tokens\": %d,\n  \"levels\": [\n%s\n  ]\n}\n",
      JsonEscape(absl::GetFlag(FLAGS_server)), JsonEscape(info.model_path()), info.num_layers(),
      JsonEscape(info.device()), absl::GetFlag(FLAGS_prompt_len),
      absl::GetFlag(FLAGS_max_new_tokens), absl::StrJoin(rows, ",\n"));
}

}  // namespace

// Parses a comma list of integers >= min; false (with a message) on a bad element.
bool ParseInts(const char* flag, const std::vector<std::string>& in, int min,
               std::vector<int>* out) {
  for (const std::string& c : in) {
    int n = 0;
    if (!absl::SimpleAtoi(c, &n) || n < min) {
      std::fprintf(stderr, "load_generator: --%s: bad value '%s'\n", flag, c.c_str());
      return false;
    }
    out->push_back(n);
  }
  return true;
}

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv,
                   "Concurrent streaming Generate load against a running dsv2-coordinator.\n"
                   "  load_generator --server 127.0.0.1:50051 --concurrency 1,8,32 "
                   "--requests 32 --prompt-len 64 --max-new-tokens 32 --json out.json");
  static constexpr dsv2::FlagRange kRanges[] = {
      {"duration", 0, 86400, "seconds; 0: --requests"},
      {"prompt_len", 1, 1 << 20},
      {"max_new_tokens", 1, 1 << 20},
      {"warmup", 0, 1 << 16},
      {"request_timeout", 0.01, 86400, "seconds"},
  };
  dsv2::ExitOnBadFlags("load_generator", kRanges);
  if (const std::string http = absl::GetFlag(FLAGS_http); !http.empty()) {
    const size_t colon = http.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(http.substr(colon + 1), &port) ||
        port < 1 || port > 65535) {
      std::fprintf(stderr, "load_generator: --http %s: expected host:port (port 1..65535)\n",
                   http.c_str());
      return 2;
    }
  }
  if (!absl::GetFlag(FLAGS_http).empty() && absl::GetFlag(FLAGS_model_name).empty()) {
    std::fprintf(stderr, "load_generator: --http needs --model-name (the id of /v1/models)\n");
    return 2;
  }
  std::vector<int> levels, requests;
  if (!ParseInts("concurrency", absl::GetFlag(FLAGS_concurrency), 1, &levels) ||
      !ParseInts("requests", absl::GetFlag(FLAGS_requests), 0, &requests)) {
    return 2;
  }
  if (requests.size() == 1) requests.resize(levels.size(), requests[0]);
  if (requests.size() != levels.size()) {
    std::fprintf(stderr, "load_generator: --requests: give one number or one per level\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_prompt_len) < 1 || absl::GetFlag(FLAGS_max_new_tokens) < 1) {
    std::fprintf(stderr, "load_generator: --prompt-len and --max-new-tokens must be >= 1\n");
    return 2;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials(), args);
  std::unique_ptr<v1::Inference::Stub> stub = v1::Inference::NewStub(channel);
  v1::ModelInfo info;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status s = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
    if (!s.ok()) {
      std::fprintf(stderr, "load_generator: GetModelInfo on %s failed: %s\n",
                   absl::GetFlag(FLAGS_server).c_str(), s.error_message().c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "load_generator: %s (%lld layers, %s), prompt %d tokens, %d new tokens\n",
               info.model_path().c_str(), static_cast<long long>(info.num_layers()),
               info.device().c_str(), absl::GetFlag(FLAGS_prompt_len),
               absl::GetFlag(FLAGS_max_new_tokens));
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) {
    RequestResult r = RunOne(stub.get(), MakeRequest(i, info.vocab_size()));
    if (!r.ok) {
      std::fprintf(stderr, "load_generator: warm-up request failed: %s\n", r.error.c_str());
      return 1;
    }
  }
  std::vector<LevelResult> results;
  for (size_t i = 0; i < levels.size(); ++i) {
    results.push_back(
        RunLevel(stub.get(), levels[i], requests[i], info.vocab_size(), static_cast<int>(i)));
    const LevelResult& l = results.back();
    std::fprintf(stderr, "load_generator: concurrency %d: %d requests in %.1f s, %d errors%s%s\n",
                 l.concurrency, l.requests, l.wall_s, l.errors, l.errors ? ", first: " : "",
                 l.first_error.c_str());
  }
  std::printf(
      "| concurrency | requests | output tok/s | req/s | TTFT p50 (ms) | TTFT p99 (ms) | "
      "ITL p50 (ms) | ITL p99 (ms) | latency p50 (ms) | errors |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const LevelResult& l : results) std::printf("%s\n", Row(l).c_str());
  const std::string json = Json(info, results);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << json;
    std::fprintf(stderr, "load_generator: wrote %s\n", path.c_str());
  }
  int errors = 0;
  for (const LevelResult& l : results) errors += l.errors;
  return errors == 0 ? 0 : 1;
}
