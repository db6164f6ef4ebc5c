// dsv2-soak-driver: the client half of scripts/soak.sh. Mixed traffic against a running
// dsv2-coordinator for a given time — random prompt lengths, greedy and sampled requests, stop
// strings, cancellations, deadlines and malformed requests — then the endurance checks:
//   * every stream ended with a documented status for its kind (below); none hung;
//   * every latent-cache page is free again once the traffic stops;
//   * the coordinator's file descriptors and threads did not grow past their values after
//     warm-up, and its resident memory is within --rss-tolerance of that value;
//   * a fixed greedy probe request gives the same tokens at the end as at the start.
// Prints one report (markdown) and exits 0 only when every check holds.
//   dsv2-soak-driver --server 127.0.0.1:50051 --pid 1234 --seconds 600
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli_flags.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "The coordinator, host:port.");
ABSL_FLAG(int, pid, 0, "The coordinator's process id, for its /proc figures (0: skip them).");
ABSL_FLAG(double, seconds, 600, "How long the traffic runs.");
ABSL_FLAG(double, warmup_seconds, 0,
          "When the baseline of descriptors, threads and memory is taken (0: 20% of --seconds, "
          "at least 10 s).");
ABSL_FLAG(int, streams, 8, "Concurrent client streams.");
ABSL_FLAG(int, max_prompt_tokens, 300, "Longest random prompt, in words.");
ABSL_FLAG(double, rss_tolerance, 0.10, "Allowed growth of resident memory over the baseline.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the traffic mix.");

namespace {

using Clock = std::chrono::steady_clock;
using dsv2::v1::GenerateRequest;
using dsv2::v1::GenerateResponse;

// The kinds of traffic and the statuses each may end with. UNAVAILABLE: a worker was killed
// under the stream, or the group was not serving yet (the soak restarts workers);
// RESOURCE_EXHAUSTED: the queue was full. Clients back off 200 ms after either.
enum Kind { kComplete, kCancel, kDeadline, kMalformed, kNumKinds };
constexpr const char* kKindNames[] = {"complete", "cancel", "deadline", "malformed"};

bool Documented(Kind kind, grpc::StatusCode code) {
  using C = grpc::StatusCode;
  switch (kind) {
    case kComplete:
      return code == C::OK || code == C::UNAVAILABLE || code == C::RESOURCE_EXHAUSTED;
    case kCancel:
      return code == C::CANCELLED || code == C::OK || code == C::UNAVAILABLE ||
             code == C::RESOURCE_EXHAUSTED;
    case kDeadline:
      return code == C::DEADLINE_EXCEEDED || code == C::OK || code == C::UNAVAILABLE ||
             code == C::RESOURCE_EXHAUSTED;
    case kMalformed:  // refused; while the group is down, refused as UNAVAILABLE first
      return code == C::INVALID_ARGUMENT || code == C::UNAVAILABLE;
    default:
      return false;
  }
}

const char* kWords[] = {"the",  "king",   "love", "night", "sweet", "lord",   "death", "heaven",
                        "fair", "honour", "good", "time",  "blood", "tongue", "eyes",  "heart"};

const char* CodeName(int code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  return code >= 0 && code < static_cast<int>(std::size(kNames)) ? kNames[code] : "?";
}

struct ProcFigures {
  int64_t fds = -1, threads = -1, rss_kb = -1;
};

ProcFigures Sample(int pid) {
  ProcFigures f;
  if (pid <= 0) return f;
  std::error_code ec;
  f.fds = 0;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++f.fds;
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  while (status >> key) {
    if (key == "Threads:") status >> f.threads;
    if (key == "VmRSS:") status >> f.rss_kb;
  }
  return f;
}

struct Tally {
  std::mutex mu;
  std::map<std::pair<int, int>, int64_t> ended;  // (kind, status code) → streams
  std::vector<std::string> undocumented;         // first few, for the report
  int64_t tokens = 0;
};

std::string RandomText(std::mt19937_64& rng, int max_words) {
  std::string text = "To be";
  const int n = std::uniform_int_distribution<int>(1, max_words)(rng);
  for (int i = 0; i < n; ++i) absl::StrAppend(&text, " ", kWords[rng() % std::size(kWords)]);
  return text;
}

// One stream of `kind`; returns its final status and counts its tokens.
grpc::Status RunOne(dsv2::v1::Inference::Stub& stub, Kind kind, std::mt19937_64& rng,
                    int64_t* tokens, bool* finish_reason_ok) {
  GenerateRequest req;
  req.set_text(RandomText(rng, absl::GetFlag(FLAGS_max_prompt_tokens)));
  req.mutable_stopping()->set_max_new_tokens(std::uniform_int_distribution<int>(1, 40)(rng));
  if (rng() % 2) {
    req.mutable_sampling()->set_temperature(0.8f);
    req.mutable_sampling()->set_top_p(0.9f);
    req.mutable_sampling()->set_seed(rng());
  }
  for (int i = static_cast<int>(rng() % 3); i > 0; --i) {
    req.mutable_stopping()->add_stop(kWords[rng() % std::size(kWords)]);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));  // a hang
  if (kind == kDeadline) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(std::uniform_int_distribution<int>(5, 400)(rng)));
  }
  if (kind == kMalformed) {
    switch (rng() % 4) {
      case 0:
        req.mutable_token_ids()->add_ids(-7);  // replaces the text: an id outside the vocabulary
        break;
      case 1:
        req.mutable_stopping()->set_max_new_tokens(-5);
        break;
      case 2:
        req.mutable_sampling()->set_temperature(-1.0f);
        break;
      default:
        for (int i = 0; i < 5000; ++i) req.mutable_stopping()->add_stop(absl::StrCat("s", i));
        break;
    }
  }
  const int cancel_after = kind == kCancel ? std::uniform_int_distribution<int>(0, 3)(rng) : -1;
  auto reader = stub.Generate(&ctx, req);
  GenerateResponse resp;
  int read = 0;
  dsv2::v1::FinishReason reason = dsv2::v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&resp)) {
    *tokens += resp.token_ids_size();
    if (resp.finish_reason() != dsv2::v1::FINISH_REASON_UNSPECIFIED) reason = resp.finish_reason();
    if (++read == cancel_after) ctx.TryCancel();
  }
  const grpc::Status status = reader->Finish();
  // A stream that ended OK must say why it ended.
  *finish_reason_ok = !status.ok() || reason != dsv2::v1::FINISH_REASON_UNSPECIFIED;
  return status;
}

// The fixed probe: greedy, fixed prompt and length. Empty on failure.
std::vector<int32_t> Probe(dsv2::v1::Inference::Stub& stub) {
  GenerateRequest req;
  req.set_text("To be, or not to be, that is the question:");
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_stopping()->set_max_new_tokens(24);
  req.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub.Generate(&ctx, req);
  GenerateResponse resp;
  std::vector<int32_t> ids;
  while (reader->Read(&resp))
    ids.insert(ids.end(), resp.token_ids().begin(), resp.token_ids().end());
  return reader->Finish().ok() ? ids : std::vector<int32_t>();
}

bool WaitServing(const std::shared_ptr<grpc::Channel>& channel, std::chrono::seconds limit) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse resp;
    if (health->Check(&ctx, {}, &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv,
                   "Mixed traffic against a dsv2-coordinator, then the soak's endurance checks.\n"
                   "  dsv2-soak-driver --server HOST:PORT --pid PID --seconds 600");
  const double seconds = absl::GetFlag(FLAGS_seconds);
  double warmup = absl::GetFlag(FLAGS_warmup_seconds);
  if (warmup <= 0) warmup = std::max(10.0, 0.2 * seconds);
  const int pid = absl::GetFlag(FLAGS_pid);
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials());
  auto stub = dsv2::v1::Inference::NewStub(channel);
  if (!WaitServing(channel, std::chrono::seconds(120))) {
    std::fprintf(stderr, "soak: the coordinator is not SERVING\n");
    return 1;
  }
  const std::vector<int32_t> probe_before = Probe(*stub);

  Tally tally;
  const auto start = Clock::now();
  const auto stop_at = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> clients;
  for (int c = 0; c < absl::GetFlag(FLAGS_streams); ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 rng(absl::GetFlag(FLAGS_seed) * 7919 + c);
      while (Clock::now() < stop_at) {
        const uint64_t r = rng() % 10;  // 60% complete, 15% cancel, 15% deadline, 10% malformed
        const Kind kind = r < 6 ? kComplete : r < 7.5 ? kCancel : r < 9 ? kDeadline : kMalformed;
        int64_t tokens = 0;
        bool reason_ok = true;
        const grpc::Status s = RunOne(*stub, kind, rng, &tokens, &reason_ok);
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
            s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));  // back off, as clients do
        }
        std::lock_guard<std::mutex> lock(tally.mu);
        tally.ended[{kind, s.error_code()}] += 1;
        tally.tokens += tokens;
        if ((!Documented(kind, s.error_code()) || !reason_ok) && tally.undocumented.size() < 10) {
          tally.undocumented.push_back(
              absl::StrCat(kKindNames[kind], ": ", CodeName(s.error_code()), " (",
                           s.error_message(), ")", reason_ok ? "" : ", OK without a reason"));
        }
      }
    });
  }
  // The baseline after warm-up, under load; the peak while running.
  ProcFigures baseline, peak;
  while (Clock::now() < stop_at) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    const ProcFigures now = Sample(pid);
    if (baseline.fds < 0 && t >= warmup) baseline = now;
    peak.fds = std::max(peak.fds, now.fds);
    peak.threads = std::max(peak.threads, now.threads);
    peak.rss_kb = std::max(peak.rss_kb, now.rss_kb);
  }
  for (std::thread& t : clients) t.join();

  // Quiet again: a restarted worker has rejoined, every page is back, nothing leaked.
  const bool serving = WaitServing(channel, std::chrono::seconds(120));
  int64_t pages_free = -1, pages_total = -2;
  for (int i = 0; i < 100 && pages_free != pages_total; ++i) {
    grpc::ClientContext ctx;
    dsv2::v1::ModelInfo info;
    if (stub->GetModelInfo(&ctx, {}, &info).ok()) {
      pages_free = info.stats().cache_pages_free();
      pages_total = info.stats().cache_pages_total();
    }
    if (pages_free != pages_total) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::vector<int32_t> probe_after = Probe(*stub);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const ProcFigures final_figures = Sample(pid);

  int64_t total = 0, undocumented = 0;
  std::printf("## soak: %.0f s of traffic, %d streams\n\n", seconds, absl::GetFlag(FLAGS_streams));
  std::printf("| kind | status | streams |\n|---|---|---|\n");
  for (const auto& [key, n] : tally.ended) {
    const Kind kind = static_cast<Kind>(key.first);
    const auto code = static_cast<grpc::StatusCode>(key.second);
    std::printf("| %s | %s%s | %lld |\n", kKindNames[kind], CodeName(key.second),
                Documented(kind, code) ? "" : " (undocumented)", static_cast<long long>(n));
    total += n;
    if (!Documented(kind, code)) undocumented += n;
  }
  std::printf("\n%lld streams, %lld tokens generated\n", static_cast<long long>(total),
              static_cast<long long>(tally.tokens));
  for (const std::string& u : tally.undocumented) std::printf("  undocumented: %s\n", u.c_str());

  std::vector<std::string> failures;
  if (!tally.undocumented.empty() || undocumented > 0) {
    failures.push_back("streams ended with an undocumented status");
  }
  if (!serving) failures.push_back("the coordinator did not come back to SERVING");
  if (pages_free != pages_total) {
    failures.push_back(
        absl::StrCat("cache pages not all back: ", pages_free, " of ", pages_total, " free"));
  }
  if (probe_before.empty() || probe_after != probe_before) {
    failures.push_back(absl::StrCat("the probe changed: ", probe_before.size(), " tokens before, ",
                                    probe_after.size(), " after (or differ)"));
  }
  if (pid > 0) {
    std::printf("\n| coordinator | after warm-up | peak | end |\n|---|---|---|---|\n");
    std::printf("| file descriptors | %lld | %lld | %lld |\n", (long long)baseline.fds,
                (long long)peak.fds, (long long)final_figures.fds);
    std::printf("| threads | %lld | %lld | %lld |\n", (long long)baseline.threads,
                (long long)peak.threads, (long long)final_figures.threads);
    std::printf("| resident memory (MB) | %.1f | %.1f | %.1f |\n", baseline.rss_kb / 1024.0,
                peak.rss_kb / 1024.0, final_figures.rss_kb / 1024.0);
    if (baseline.fds < 0) {
      failures.push_back("no baseline: the run was shorter than the warm-up");
    } else {
      if (final_figures.fds > baseline.fds) {
        failures.push_back(
            absl::StrCat("file descriptors grew: ", baseline.fds, " → ", final_figures.fds));
      }
      if (final_figures.threads > baseline.threads) {
        failures.push_back(
            absl::StrCat("threads grew: ", baseline.threads, " → ", final_figures.threads));
      }
      const double tol = absl::GetFlag(FLAGS_rss_tolerance);
      if (final_figures.rss_kb > baseline.rss_kb * (1 + tol)) {
        failures.push_back(absl::StrCat("resident memory grew more than ", 100 * tol,
                                        "%: ", baseline.rss_kb / 1024, " MB → ",
                                        final_figures.rss_kb / 1024, " MB"));
      }
    }
  }
  std::printf("\nprobe: %zu tokens, %s; cache pages free at the end: %lld of %lld\n",
              probe_after.size(), probe_after == probe_before ? "unchanged" : "CHANGED",
              static_cast<long long>(pages_free), static_cast<long long>(pages_total));
  for (const std::string& f : failures) std::printf("FAILED: %s\n", f.c_str());
  std::printf("%s\n", failures.empty() ? "soak: PASSED" : "soak: FAILED");
  return failures.empty() ? 0 : 1;
}
