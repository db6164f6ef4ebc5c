// Small helpers shared by dsv2-cli's subcommands: status names, deadlines, display quoting,
// and Ctrl-C handling that cancels the RPC in flight.
#pragma once

#include <atomic>
#include <csignal>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace dsv2::cli {

// Exit codes shared by every subcommand (health has its own: 0 serving, 1 not, 2 unreachable).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRpcFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;

// "INVALID_ARGUMENT" for grpc::StatusCode::INVALID_ARGUMENT.
const char* StatusCodeName(grpc::StatusCode code);

// "INVALID_ARGUMENT: text: the text is empty".
std::string DescribeStatus(const grpc::Status& status);

// Sets the context's deadline `seconds` from now; no deadline when seconds <= 0.
void SetTimeout(grpc::ClientContext* context, double seconds);

// The text in double quotes with control characters, quotes and backslashes escaped; UTF-8
// passes through unchanged.
std::string QuoteForDisplay(const std::string& text);

// "1,2, 3" -> {1, 2, 3}; an error names the bad element.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& list);

// Removes every `--NAME VALUE` / `--NAME=VALUE` (one or two dashes) before a bare "--" from
// `args`, returning the values in order. Lets a flag be given several times.
std::vector<std::string> ExtractRepeatedFlag(const std::string& name,
                                             std::vector<std::string>* args);

// Ctrl-C (SIGINT) and SIGTERM handling. Construct before the first gRPC channel: it blocks
// both signals in the calling thread, so every thread started later inherits the mask, and a
// watcher thread receives them instead. The first signal cancels the watched RPC (or exits at
// once with 130 when none is watched); a second one exits at once.
class InterruptWatcher {
 public:
  InterruptWatcher();
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  // The RPC to cancel on interrupt; nullptr to stop watching one.
  void Watch(grpc::ClientContext* context);
  bool interrupted() const { return interrupted_.load(); }

 private:
  void Loop();

  sigset_t signals_;
  std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;  // guarded by mu_
  std::atomic<bool> interrupted_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace dsv2::cli
