// Failures of expert workers with real processes: a worker killed with SIGKILL mid-stream ends
// the stream with UNAVAILABLE, health turns NOT_SERVING, and the restarted worker rejoins; a
// worker of another checkpoint or dtype, or asked for NCCL on the CPU, is refused naming why;
// hostile bytes on a worker's data port are dropped and the worker keeps serving.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cluster_auth.h"
#include "common/comm/communicator.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "dsv2/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/e2e/ep_fixture.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;

// Failures of workers, as their own suite.
class WorkerFaultTest : public ExpertParallelTest {};

TEST_F(WorkerFaultTest, KilledWorkerEndsStreamAndRejoins) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  const StreamAcrossKill ended =
      StreamAcross(coordinator->port(), prompts_[0], [&] { w2.Kill(SIGKILL); });
  EXPECT_EQ(ended.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << ended.status.error_message();
  EXPECT_LT(ended.after_kill, 10s);
  ASSERT_TRUE(WaitServing(*coordinator, false, 5s));
  EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Generate(coordinator->port(), prompts_[1], 4).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  w2.Start();  // same rank, same ports
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::SERVING);
  ExpectSameAsStandalone(coordinator->port());
}

// Both ends of the data plane must compute in the same precision: a worker refuses a Configure
// whose dtype differs from its own (--dtype), naming both, and reports its device and dtype.
TEST_F(WorkerFaultTest, ConfigureWithAnotherDtypeIsRefusedNamingBoth) {
  WorkerProcess w1(kLite, 1);
  auto stub = v1::ExpertWorker::NewStub(
      grpc::CreateChannel(w1.address(), grpc::InsecureChannelCredentials()));
  v1::ConfigureRequest req;
  req.set_rank(1);
  req.set_world_size(2);
  req.set_expert_begin(8);
  req.set_expert_end(16);
  req.set_session(1);
  req.set_transport("tcp");
  req.set_dtype("bfloat16");
  v1::ConfigureResponse resp;
  grpc::Status s;
  for (int attempt = 0; attempt < 100; ++attempt) {  // the worker takes a moment to listen
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::WorkerStatus status;
    if (stub->GetWorkerStatus(&ctx, {}, &status).ok()) break;
    std::this_thread::sleep_for(100ms);
  }
  {
    grpc::ClientContext ctx;
    v1::WorkerStatus status;
    ASSERT_TRUE(stub->GetWorkerStatus(&ctx, {}, &status).ok());
    req.set_checkpoint_fingerprint(status.checkpoint_fingerprint());
  }
  {
    grpc::ClientContext ctx;
    s = stub->Configure(&ctx, req, &resp);
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("coordinator computes in bfloat16"));
  EXPECT_THAT(s.error_message(), HasSubstr("worker rank 1 in float32"));
  req.set_dtype("float32");
  {
    grpc::ClientContext ctx;
    s = stub->Configure(&ctx, req, &resp);
  }
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.device(), "cpu");
  EXPECT_EQ(resp.dtype(), "float32");
}

// NCCL needs every rank on a GPU of its own: a CPU coordinator asked for it names itself, and a
// CPU worker configured for it refuses (the unique id arrives, the worker says why it cannot).
TEST_F(WorkerFaultTest, NcclWithCpuRanksIsRefusedNamingTheRank) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  auto coordinator = std::move(CoordinatorServer::Start(
                                   {.model_dir = kLite,
                                    .engine = {.max_context = 512},
                                    .expert_parallel = {.workers = {w1.address(), w2.address()},
                                                        .timeout = absl::Seconds(2),
                                                        .retry_interval = absl::Milliseconds(200),
                                                        .transport = "nccl"}}))
                         .value();
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(coordinator->expert_group()->serving());
  EXPECT_THAT(coordinator->expert_group()->status().message(),
              HasSubstr("--transport nccl: the coordinator (rank 0) is on the CPU"));
  EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  auto stub = v1::ExpertWorker::NewStub(
      grpc::CreateChannel(w1.address(), grpc::InsecureChannelCredentials()));
  v1::WorkerStatus status;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->GetWorkerStatus(&ctx, {}, &status).ok());
  }
  v1::ConfigureRequest req;
  req.set_rank(1);
  req.set_world_size(3);
  req.set_expert_begin(0);
  req.set_expert_end(8);
  req.set_session(99);
  req.set_transport("nccl");
  req.set_nccl_unique_id(std::string(kNcclUniqueIdBytes, 'x'));
  req.set_checkpoint_fingerprint(status.checkpoint_fingerprint());
  v1::ConfigureResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub->Configure(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(kNcclTransportBuilt ? "worker rank 1 computes on the CPU"
                                                               : "built without NCCL"));
}

// What a stranger can send to a worker's data port: garbage, a header announcing a huge
// payload, a truncated header, a hello dripped one byte at a time. Each connection is dropped
// (within the worker's --timeout for the drip), the worker's memory stays bounded (the huge
// count is refused from the header, nothing is allocated for it), and a coordinator then
// connects and serves as before.
TEST_F(WorkerFaultTest, HostileDataPortInputIsDroppedAndTheWorkerKeepsServing) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2, {"--timeout=2"});
  // Connects to w2's data port (retrying while it starts); -1 on failure.
  auto connect_data = [&]() {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(w2.data_port()));
      if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return fd;
      close(fd);
      std::this_thread::sleep_for(100ms);
    }
    return -1;
  };
  // True when the worker closes the connection within `limit` (reads until EOF or error).
  auto dropped_within = [](int fd, std::chrono::seconds limit) {
    timeval tv{.tv_sec = static_cast<time_t>(limit.count()), .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    while (true) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close(fd);
        return true;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        close(fd);
        return false;  // still open after the limit
      }
    }
  };
  auto header = [](uint16_t type, int64_t count, int32_t hidden, int32_t top_k,
                   int64_t payload_bytes) {
    std::array<uint8_t, 40> h{};
    const uint32_t magic = 0x32565344;
    const uint16_t version = 1;
    const int32_t layer = 0, rank = 0;
    std::memcpy(&h[0], &magic, 4);
    std::memcpy(&h[4], &version, 2);
    std::memcpy(&h[6], &type, 2);
    std::memcpy(&h[8], &layer, 4);
    std::memcpy(&h[12], &rank, 4);
    std::memcpy(&h[16], &count, 8);
    std::memcpy(&h[24], &hidden, 4);
    std::memcpy(&h[28], &top_k, 4);
    std::memcpy(&h[32], &payload_bytes, 8);
    return h;
  };
  auto send_all = [](int fd, const void* data, size_t n) {
    return send(fd, data, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
  };
  {  // Garbage.
    const int fd = connect_data();
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> junk(4096);
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<uint8_t>(i * 131 + 7);
    send_all(fd, junk.data(), junk.size());
    EXPECT_TRUE(dropped_within(fd, 10s)) << "garbage";
  }
  {  // A dispatch announcing 2^40 tokens (petabytes of payload) before any hello.
    const int fd = connect_data();
    ASSERT_GE(fd, 0);
    const auto h = header(4, int64_t{1} << 40, 2048, 6, int64_t{1} << 55);
    send_all(fd, h.data(), h.size());
    EXPECT_TRUE(dropped_within(fd, 10s)) << "oversized count";
  }
  {  // A hello announcing a huge payload.
    const int fd = connect_data();
    ASSERT_GE(fd, 0);
    const auto h = header(1, 0, 0, 0, int64_t{1} << 40);
    send_all(fd, h.data(), h.size());
    EXPECT_TRUE(dropped_within(fd, 10s)) << "oversized hello";
  }
  {  // Half a header, then silence.
    const int fd = connect_data();
    ASSERT_GE(fd, 0);
    const auto h = header(1, 0, 0, 0, 16);
    send_all(fd, h.data(), 20);
    EXPECT_TRUE(dropped_within(fd, 10s)) << "truncated header";
  }
  {  // A valid hello header, one byte every 300 ms: dropped by the 2 s timeout.
    const int fd = connect_data();
    ASSERT_GE(fd, 0);
    const auto h = header(1, 0, 0, 0, 16);
    const auto started = std::chrono::steady_clock::now();
    bool open = true;
    for (size_t i = 0; i < h.size() && open; ++i) {
      open = send_all(fd, &h[i], 1);
      std::this_thread::sleep_for(300ms);
      char c;
      const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) open = false;
    }
    if (open) open = !dropped_within(fd, 10s);
    EXPECT_FALSE(open) << "slow drip";
    EXPECT_LT(std::chrono::steady_clock::now() - started, 12s);
  }
  // Bounded memory: nothing was allocated for the announced sizes.
  std::ifstream status(absl::StrCat("/proc/", w2.pid(), "/status"));
  std::string key;
  int64_t rss_kb = -1;
  while (status >> key) {
    if (key == "VmRSS:") status >> rss_kb;
  }
  EXPECT_GT(rss_kb, 0);
  EXPECT_LT(rss_kb, 512 * 1024) << "worker resident memory after the attacks";
  // And the worker still serves a coordinator.
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  ExpectSameAsStandalone(coordinator->port());
}

TEST_F(WorkerFaultTest, WorkerWithAnotherCheckpointIsRefused) {
  WorkerProcess w1(kLite, 1), w2(kV2, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(coordinator->expert_group()->serving());
  EXPECT_THAT(coordinator->expert_group()->status().message(), HasSubstr("checkpoint mismatch"));
  EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

}  // namespace
}  // namespace dsv2
