// The authenticated cluster with real worker processes (common/cluster_auth.h).
#include <chrono>
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
