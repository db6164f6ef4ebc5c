// Expert parallelism with real worker processes over loopback: a coordinator plus 2 or 3
// dsv2-worker processes (uneven shards) give the standalone greedy tokens and logprobs within
// 1e-5; a worker killed with SIGKILL mid-stream ends the stream with UNAVAILABLE, health turns
// NOT_SERVING, and the restarted worker rejoins; a worker serving another checkpoint is refused.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cluster_auth.h"
#include "common/comm/communicator.h"
#include "common/safetensors.h"
#include "coordinator/server/coordinator_server.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "dsv2/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/e2e/ep_processes.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::string kLite = std::string(DSV2_TEST_DATA_DIR) + "/golden/lite";
const std::string kV2 = std::string(DSV2_TEST_DATA_DIR) + "/golden/v2";

bool WaitServing(const CoordinatorServer& server, bool want, std::chrono::seconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (server.expert_group()->serving() == want) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::unique_ptr<CoordinatorServer> StartCoordinator(const std::vector<std::string>& workers,
                                                    bool coordinator_experts = false,
                                                    ClusterSecret secret = {}) {
  return std::move(CoordinatorServer::Start(
                       {.model_dir = kLite,
                        .engine = {.max_context = 512},
                        .expert_parallel = {.workers = workers,
                                            .coordinator_hosts_experts = coordinator_experts,
                                            .timeout = absl::Seconds(2),
                                            .retry_interval = absl::Milliseconds(200),
                                            .secret = secret}}))
      .value();
}

// A file holding `secret`, under the test's temp dir; the flag that names it.
std::string SecretFlag(const std::string& name, const std::string& secret) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << secret << "\n";
  return "--cluster-secret-file=" + path;
}

class ExpertParallelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    prompts_.clear();
    expected_.clear();
    auto ref = SafetensorsFile::Open(kLite + "/reference.safetensors");
    for (int i = 0; i < 3; ++i) {
      const TensorInfo& t = (*ref)->tensors().at(absl::StrCat("prompt.", i, ".ids"));
      std::vector<int32_t> ids;
      for (int64_t j = 0; j < t.numel(); ++j) ids.push_back(static_cast<const int64_t*>(t.data)[j]);
      prompts_.push_back(ids);
    }
    standalone_ =
        std::move(CoordinatorServer::Start(
                      {.model_dir = kLite, .engine = {.max_context = 512}, .expert_parallel = {}}))
            .value()
            .release();
    for (const auto& p : prompts_) expected_.push_back(Generate(standalone_->port(), p, 16));
  }
  static void TearDownTestSuite() {
    delete standalone_;
    standalone_ = nullptr;
  }

  void ExpectSameAsStandalone(int port) {
    for (size_t i = 0; i < prompts_.size(); ++i) {
      const GenResult r = Generate(port, prompts_[i], 16);
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.tokens, expected_[i].tokens) << "prompt " << i;
      ASSERT_EQ(r.logprobs.size(), expected_[i].logprobs.size());
      for (size_t j = 0; j < r.logprobs.size(); ++j) {
        EXPECT_NEAR(r.logprobs[j], expected_[i].logprobs[j], 1e-5) << "prompt " << i << " " << j;
      }
    }
  }

  static CoordinatorServer* standalone_;
  static std::vector<std::vector<int32_t>> prompts_;
  static std::vector<GenResult> expected_;
};

CoordinatorServer* ExpertParallelTest::standalone_ = nullptr;
std::vector<std::vector<int32_t>> ExpertParallelTest::prompts_;
std::vector<GenResult> ExpertParallelTest::expected_;

TEST_F(ExpertParallelTest, TwoWorkersMatchStandalone) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::SERVING);
  ExpectSameAsStandalone(coordinator->port());
  const CommStats comm = coordinator->expert_group()->comm_stats();
  EXPECT_GT(comm.total.bytes_sent, 0);
  // The shared experts ran while the tokens were away: part of every exchange is accounted as
  // computed, the rest as waited, and the two add up to the time away.
  const ExchangeOverlapStats overlap = coordinator->expert_group()->overlap_stats();
  EXPECT_GT(overlap.layers, 0);
  EXPECT_GT(overlap.overlapped_seconds, 0);
  EXPECT_NEAR(overlap.overlapped_seconds + overlap.waited_seconds, overlap.away_seconds, 1e-6);
  EXPECT_GT(overlap.hidden_fraction(), 0);
  EXPECT_LE(overlap.hidden_fraction(), 1);
}

// Concurrent streams make steps of several sequences, which run as two micro-batches (the
// default): one's attention while the other's tokens are away. Same outputs as standalone.
TEST_F(ExpertParallelTest, ConcurrentStreamsInTwoMicroBatchesMatchStandalone) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  std::vector<GenResult> got(prompts_.size());
  std::vector<std::thread> streams;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    streams.emplace_back([&, i] { got[i] = Generate(coordinator->port(), prompts_[i], 16); });
  }
  for (std::thread& t : streams) t.join();
  for (size_t i = 0; i < prompts_.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    EXPECT_EQ(got[i].tokens, expected_[i].tokens) << "prompt " << i;
    ASSERT_EQ(got[i].logprobs.size(), expected_[i].logprobs.size());
    for (size_t j = 0; j < got[i].logprobs.size(); ++j) {
      EXPECT_NEAR(got[i].logprobs[j], expected_[i].logprobs[j], 1e-5) << "prompt " << i << " " << j;
    }
  }
}

TEST_F(ExpertParallelTest, ThreeWorkersUnevenShardsMatchStandalone) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2), w3(kLite, 3);  // 16 experts: 6, 5, 5
  auto coordinator = StartCoordinator({w1.address(), w2.address(), w3.address()});
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  EXPECT_EQ(coordinator->expert_group()->placement().Range(1).size(), 6);
  EXPECT_EQ(coordinator->expert_group()->placement().Range(3).size(), 5);
  ExpectSameAsStandalone(coordinator->port());
}

TEST_F(ExpertParallelTest, CoordinatorShardPlusTwoWorkersMatchStandalone) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()}, /*coordinator_experts=*/true);
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  EXPECT_GT(coordinator->expert_group()->placement().Range(0).size(), 0);
  ExpectSameAsStandalone(coordinator->port());
}

TEST_F(ExpertParallelTest, CoordinatorProcessWithTwoWorkerProcesses) {
  // Everything as separate processes, started as an operator would.
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  const int port = FreePort();
  ChildProcess coordinator;
  coordinator.Spawn({DSV2_COORDINATOR_BIN, "--model=" + kLite, "--host=127.0.0.1",
                     absl::StrCat("--port=", port), "--http-port=0", "--max-context=512",
                     absl::StrCat("--workers=", w1.address(), ",", w2.address())},
                    "coordinator");
  const auto end = std::chrono::steady_clock::now() + 60s;
  while (Health(port) != grpc::health::v1::HealthCheckResponse::SERVING &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(Health(port), grpc::health::v1::HealthCheckResponse::SERVING);
  ExpectSameAsStandalone(port);
  const int status = coordinator.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Failures of workers, as their own suite.
class WorkerFaultTest : public ExpertParallelTest {};

TEST_F(WorkerFaultTest, KilledWorkerEndsStreamAndRejoins) {
  WorkerProcess w1(kLite, 1), w2(kLite, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", coordinator->port()), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest req;
  for (int32_t id : prompts_[0]) req.mutable_token_ids()->add_ids(id);
  req.mutable_stopping()->set_max_new_tokens(400);
  req.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  const auto killed_at = std::chrono::steady_clock::now();
  w2.Kill(SIGKILL);
  while (reader->Read(&resp)) {
  }
  const grpc::Status ended = reader->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE) << ended.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 10s);
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

TEST_F(WorkerFaultTest, WorkerWithAnotherCheckpointIsRefused) {
  WorkerProcess w1(kLite, 1), w2(kV2, 2);
  auto coordinator = StartCoordinator({w1.address(), w2.address()});
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(coordinator->expert_group()->serving());
  EXPECT_THAT(coordinator->expert_group()->status().message(), HasSubstr("checkpoint mismatch"));
  EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

// The authenticated cluster: workers and coordinator that hold the same secret serve as before;
// a coordinator without it or with another one cannot configure a worker, a worker without it
// is refused by a coordinator that has one, and a replayed Configure fails.
class ClusterSecretTest : public ExpertParallelTest {};

constexpr char kSecret[] = "0123456789abcdef-the-cluster-secret";

TEST_F(ClusterSecretTest, SameSecretServesAsBefore) {
  const std::string flag = SecretFlag("secret", kSecret);
  WorkerProcess w1(kLite, 1, {flag}), w2(kLite, 2, {flag});
  auto coordinator = StartCoordinator({w1.address(), w2.address()}, false,
                                      ClusterSecret::FromBytes(kSecret).value());
  ASSERT_TRUE(WaitServing(*coordinator, true)) << coordinator->expert_group()->status();
  ExpectSameAsStandalone(coordinator->port());
}

TEST_F(ClusterSecretTest, CoordinatorWithoutOrWithAnotherSecretIsRefused) {
  WorkerProcess w1(kLite, 1, {SecretFlag("secret", kSecret)});
  {
    auto coordinator = StartCoordinator({w1.address()});
    std::this_thread::sleep_for(1500ms);
    EXPECT_FALSE(coordinator->expert_group()->serving());
    EXPECT_THAT(coordinator->expert_group()->status().message(),
                HasSubstr("the call carried no credentials"));
  }
  {
    auto coordinator = StartCoordinator({w1.address()}, false,
                                        ClusterSecret::FromBytes("another-secret-of-16+").value());
    std::this_thread::sleep_for(1500ms);
    EXPECT_FALSE(coordinator->expert_group()->serving());
    EXPECT_THAT(coordinator->expert_group()->status().message(), HasSubstr("wrong MAC"));
    EXPECT_EQ(Health(coordinator->port()), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
}

TEST_F(ClusterSecretTest, WorkerWithoutTheSecretIsRefusedByTheCoordinator) {
  WorkerProcess w1(kLite, 1);
  auto coordinator =
      StartCoordinator({w1.address()}, false, ClusterSecret::FromBytes(kSecret).value());
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(coordinator->expert_group()->serving());
  EXPECT_THAT(coordinator->expert_group()->status().message(),
              HasSubstr("holds no cluster secret"));
}

TEST_F(ClusterSecretTest, ReplayedConfigureIsRefusedAndRefusalsAreCounted) {
  WorkerProcess w1(kLite, 1, {SecretFlag("secret", kSecret)});
  const ClusterSecret secret = ClusterSecret::FromBytes(kSecret).value();
  auto stub = v1::ExpertWorker::NewStub(
      grpc::CreateChannel(w1.address(), grpc::InsecureChannelCredentials()));
  v1::Challenge challenge;
  for (int attempt = 0; attempt < 100; ++attempt) {  // the worker takes a moment to listen
    grpc::ClientContext ctx;
    if (stub->GetChallenge(&ctx, {}, &challenge).ok()) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(challenge.auth_required());
  ASSERT_EQ(challenge.nonce().size(), 32u);
  // An authenticated status call: learn the fingerprint.
  auto call = [&](auto method, const auto& req, auto* resp, const std::string& name,
                  const std::string& nonce, const ClusterSecret& with) {
    grpc::ClientContext ctx;
    std::string bytes;
    req.SerializeToString(&bytes);
    ctx.AddMetadata(kAuthNonceKey, nonce);
    ctx.AddMetadata(kAuthMacKey, with.Mac(name, nonce, bytes));
    return ((*stub).*method)(&ctx, req, resp);
  };
  v1::WorkerStatus status;
  ASSERT_TRUE(call(&v1::ExpertWorker::Stub::GetWorkerStatus, v1::WorkerStatusRequest(), &status,
                   "GetWorkerStatus", challenge.nonce(), secret)
                  .ok());
  v1::ConfigureRequest req;
  req.set_rank(1);
  req.set_world_size(2);
  req.set_expert_begin(0);
  req.set_expert_end(16);
  req.set_session(7);
  req.set_transport("tcp");
  req.set_checkpoint_fingerprint(status.checkpoint_fingerprint());
  v1::ConfigureResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->GetChallenge(&ctx, {}, &challenge).ok());
  }
  const std::string nonce = challenge.nonce();
  grpc::Status s = call(&v1::ExpertWorker::Stub::Configure, req, &resp, "Configure", nonce, secret);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = call(&v1::ExpertWorker::Stub::Configure, req, &resp, "Configure", nonce, secret);  // replay
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("already used"));
  // A MAC over another request (the rank changed after signing) fails too.
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->GetChallenge(&ctx, {}, &challenge).ok());
  }
  std::string signed_bytes;
  req.SerializeToString(&signed_bytes);
  req.set_rank(2);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kAuthNonceKey, challenge.nonce());
    ctx.AddMetadata(kAuthMacKey, secret.Mac("Configure", challenge.nonce(), signed_bytes));
    s = stub->Configure(&ctx, req, &resp);
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->GetChallenge(&ctx, {}, &challenge).ok());
  }
  ASSERT_TRUE(call(&v1::ExpertWorker::Stub::GetWorkerStatus, v1::WorkerStatusRequest(), &status,
                   "GetWorkerStatus", challenge.nonce(), secret)
                  .ok());
  EXPECT_EQ(status.auth_refusals(), 2);
  // Unauthenticated status calls are refused as well.
  grpc::ClientContext ctx;
  EXPECT_EQ(stub->GetWorkerStatus(&ctx, {}, &status).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace dsv2
