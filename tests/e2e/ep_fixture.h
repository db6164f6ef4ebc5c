// The expert-parallel e2e fixture: the lite golden checkpoint served standalone once per suite
// (the expected greedy tokens and logprobs of three prompts), in-process coordinators over
// dsv2-worker processes, and the helpers the suites share (expert_parallel_test.cc,
// worker_fault_test.cc, cluster_secret_test.cc).
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cluster_auth.h"
#include "common/safetensors.h"
#include "coordinator/server/coordinator_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/ep_processes.h"

namespace dsv2 {

using namespace std::chrono_literals;

inline const std::string kLite = std::string(DSV2_TEST_DATA_DIR) + "/golden/lite";
inline const std::string kV2 = std::string(DSV2_TEST_DATA_DIR) + "/golden/v2";

// The first three prompts of the lite fixture's reference (token ids).
inline std::vector<std::vector<int32_t>> ReferencePrompts() {
  std::vector<std::vector<int32_t>> prompts;
  auto ref = SafetensorsFile::Open(kLite + "/reference.safetensors");
  if (!ref.ok()) return prompts;
  for (int i = 0; i < 3; ++i) {
    const TensorInfo& t = (*ref)->tensors().at(absl::StrCat("prompt.", i, ".ids"));
    std::vector<int32_t> ids;
    for (int64_t j = 0; j < t.numel(); ++j) ids.push_back(static_cast<const int64_t*>(t.data)[j]);
    prompts.push_back(ids);
  }
  return prompts;
}

inline bool WaitServing(const CoordinatorServer& server, bool want,
                        std::chrono::seconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (server.expert_group()->serving() == want) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

inline std::unique_ptr<CoordinatorServer> StartCoordinator(const std::vector<std::string>& workers,
                                                           bool coordinator_experts = false,
                                                           ClusterSecret secret = {},
                                                           int micro_batches = 1) {
  return std::move(CoordinatorServer::Start(
                       {.model_dir = kLite,
                        .engine = {.max_context = 512},
                        .expert_parallel = {.workers = workers,
                                            .coordinator_hosts_experts = coordinator_experts,
                                            .timeout = absl::Seconds(2),
                                            .retry_interval = absl::Milliseconds(200),
                                            .secret = secret,
                                            .micro_batches = micro_batches}}))
      .value();
}

// A file holding `secret`, under the test's temp dir; the flag that names it.
inline std::string SecretFlag(const std::string& name, const std::string& secret) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << secret << "\n";
  return "--cluster-secret-file=" + path;
}

class ExpertParallelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    expected_.clear();
    prompts_ = ReferencePrompts();
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

  static inline CoordinatorServer* standalone_ = nullptr;
  static inline std::vector<std::vector<int32_t>> prompts_;
  static inline std::vector<GenResult> expected_;
};

}  // namespace dsv2
