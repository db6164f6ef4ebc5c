// 10,000 concurrent idle streams against a dsv2-coordinator process: 40 connections, 250
// Generate calls each, started (headers sent) but never sending their request. The server
// holds no thread for them (a handler runs only once a request arrives), its resident memory
// stays bounded, it keeps serving other clients meanwhile, and the memory comes back down
// once they are cancelled.
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/ep_processes.h"

namespace dsv2 {
namespace {

using namespace std::chrono_literals;

int64_t RssKb(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  int64_t kb = -1;
  while (status >> key) {
    if (key == "VmRSS:") status >> kb;
  }
  return kb;
}

int64_t Threads(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  int64_t n = -1;
  while (status >> key) {
    if (key == "Threads:") status >> n;
  }
  return n;
}

TEST(IdleStreamsTest, TenThousandIdleStreamsKeepMemoryBoundedAndOthersServed) {
  const int port = FreePort();
  ChildProcess server;
  server.Spawn({DSV2_COORDINATOR_BIN, "--host=127.0.0.1", absl::StrCat("--port=", port),
                "--http-port=0", "--threads=1"},
               "idle_streams_coordinator");
  const auto up_by = std::chrono::steady_clock::now() + 60s;
  while (Health(port) != grpc::health::v1::HealthCheckResponse::SERVING &&
         std::chrono::steady_clock::now() < up_by) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(Health(port), grpc::health::v1::HealthCheckResponse::SERVING);
  ASSERT_TRUE(Generate(port, {1, 2, 3}, 4).status.ok());
  const int64_t rss_before = RssKb(server.pid()), threads_before = Threads(server.pid());

  constexpr int kConnections = 40, kPerConnection = 250;
  grpc::CompletionQueue cq;
  struct Idle {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call;
  };
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<Idle> idle;
  idle.reserve(kConnections * kPerConnection);
  for (int c = 0; c < kConnections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("dsv2.test.connection", c);  // a connection of its own per channel
    channels.push_back(grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                                 grpc::InsecureChannelCredentials(), args));
    grpc::GenericStub stub(channels.back());
    for (int i = 0; i < kPerConnection; ++i) {
      Idle s;
      s.ctx = std::make_unique<grpc::ClientContext>();
      s.call = stub.PrepareCall(s.ctx.get(), "/dsv2.v1.Inference/Generate", &cq);
      s.call->StartCall(reinterpret_cast<void*>(idle.size() + 1));
      idle.push_back(std::move(s));
    }
  }
  // Every call is started (its headers are on the wire) once its tag comes back.
  size_t started = 0;
  void* tag = nullptr;
  bool ok = false;
  const auto deadline = std::chrono::system_clock::now() + 60s;
  while (started < idle.size() &&
         cq.AsyncNext(&tag, &ok, deadline) == grpc::CompletionQueue::GOT_EVENT) {
    ++started;
  }
  EXPECT_EQ(started, idle.size());
  std::this_thread::sleep_for(1s);
  const int64_t rss_idle = RssKb(server.pid()), threads_idle = Threads(server.pid());
  std::fprintf(stderr,
               "coordinator with %zu idle streams: RSS %.1f MB (before %.1f MB), threads %lld "
               "(before %lld)\n",
               idle.size(), rss_idle / 1024.0, rss_before / 1024.0,
               static_cast<long long>(threads_idle), static_cast<long long>(threads_before));
  // Bounded: well under 64 KB of server memory per idle stream, and no thread per stream.
  // Under a sanitizer (this tree and the coordinator it runs built with ASan or TSan) every
  // byte the server touches also costs shadow memory, up to 8x: the bound scales with it.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int64_t kShadow = 8;
#else
  constexpr int64_t kShadow = 1;
#endif
  EXPECT_LT(rss_idle - rss_before, 10000 * 64 * kShadow);
  EXPECT_LT(threads_idle, threads_before + 64);
  // Others are served meanwhile.
  const GenResult other = Generate(port, {4, 5, 6}, 4);
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
  EXPECT_EQ(other.tokens.size(), 4u);

  for (Idle& s : idle) s.ctx->TryCancel();
  std::vector<grpc::Status> ends(idle.size());
  for (size_t i = 0; i < idle.size(); ++i) idle[i].call->Finish(&ends[i], &ends[i]);
  size_t finished = 0;
  while (finished < idle.size() &&
         cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + 30s) ==
             grpc::CompletionQueue::GOT_EVENT) {
    ++finished;
  }
  idle.clear();
  channels.clear();
  std::this_thread::sleep_for(2s);
  EXPECT_TRUE(Generate(port, {7, 8, 9}, 4).status.ok());
  EXPECT_EQ(server.Stop(SIGTERM), 0);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace dsv2
