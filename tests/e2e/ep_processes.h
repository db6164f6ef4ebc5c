// Helpers for tests that run dsv2-worker (and dsv2-coordinator) processes on loopback: free
// ports, child processes with their stderr in a log under the test's temp dir, a greedy
// Generate call that collects tokens and logprobs, and the health check.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

extern char** environ;

namespace dsv2 {

// $DSV2_WORKER_BIN (a packed copy on a GPU machine), else the one this build made.
inline std::string WorkerBinary() {
  if (const char* env = std::getenv("DSV2_WORKER_BIN"); env != nullptr && *env != 0) return env;
  return DSV2_WORKER_BIN;
}

inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A child process (posix_spawn) whose stderr goes to a log file under the test's temp dir.
class ChildProcess {
 public:
  ~ChildProcess() { Stop(SIGTERM); }

  void Spawn(std::vector<std::string> args, const std::string& log_name) {
    const std::string log = absl::StrCat(::testing::TempDir(), "/", log_name, ".log");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    // stdout and stderr to the log: a child must not hold the test's output pipe open (ctest
    // waits for it to close, so an orphan would hang the run if the test process died).
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
  }

  // Sends `sig`, waits, and returns the exit status (-1 when not running).
  int Stop(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// A dsv2-worker process.
class WorkerProcess {
 public:
  WorkerProcess(std::string model, int rank, std::vector<std::string> extra = {})
      : model_(std::move(model)), rank_(rank), extra_(std::move(extra)) {
    port_ = FreePort();
    data_port_ = FreePort();
    Start();
  }

  void Start() {
    std::vector<std::string> args = {WorkerBinary(),
                                     "--model=" + model_,
                                     absl::StrCat("--rank=", rank_),
                                     "--host=127.0.0.1",
                                     absl::StrCat("--port=", port_),
                                     absl::StrCat("--data-port=", data_port_),
                                     "--threads=1",
                                     "--device=cpu",
                                     "--dtype=float32"};  // `extra` may say otherwise
    args.insert(args.end(), extra_.begin(), extra_.end());
    process_.Spawn(args, absl::StrCat("worker", rank_));
  }
  void Kill(int sig) { process_.Stop(sig); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int data_port() const { return data_port_; }
  pid_t pid() const { return process_.pid(); }

 private:
  std::string model_;
  int rank_;
  std::vector<std::string> extra_;
  int port_ = 0;
  int data_port_ = 0;
  ChildProcess process_;
};

struct GenResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

inline GenResult Generate(int port, const std::vector<int32_t>& prompt, int max_new) {
  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest req;
  for (int32_t id : prompt) req.mutable_token_ids()->add_ids(id);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_stopping()->set_max_new_tokens(max_new);
  req.mutable_stopping()->set_ignore_eos(true);
  req.mutable_logprobs()->set_top_logprobs(5);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->Generate(&ctx, req);
  GenResult r;
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    for (int32_t t : resp.token_ids()) r.tokens.push_back(t);
    for (const auto& lp : resp.logprobs()) {
      r.logprobs.push_back(lp.chosen().logprob());
      for (const auto& t : lp.top()) r.logprobs.push_back(t.logprob());
    }
  }
  r.status = reader->Finish();
  return r;
}

// A long greedy stream (400 tokens) of `prompt` on `port`; once its first response arrived,
// `kill` runs. Returns how the stream ended and how long after the kill (a stream that never
// started ends with its own status and a zero duration).
struct StreamAcrossKill {
  grpc::Status status;
  std::chrono::steady_clock::duration after_kill{};
};
inline StreamAcrossKill StreamAcross(int port, const std::vector<int32_t>& prompt,
                                     const std::function<void()>& kill) {
  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest req;
  for (int32_t id : prompt) req.mutable_token_ids()->add_ids(id);
  req.mutable_stopping()->set_max_new_tokens(400);
  req.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse resp;
  if (!reader->Read(&resp)) return {reader->Finish()};
  const auto killed_at = std::chrono::steady_clock::now();
  kill();
  while (reader->Read(&resp)) {
  }
  const grpc::Status status = reader->Finish();
  return {status, std::chrono::steady_clock::now() - killed_at};
}

inline grpc::health::v1::HealthCheckResponse::ServingStatus Health(int port) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse resp;
  stub->Check(&ctx, {}, &resp);
  return resp.status();
}

}  // namespace dsv2
