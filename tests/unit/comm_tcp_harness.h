// A loopback expert-parallel cluster for the communicator tests: the coordinator on the test's
// thread, each worker rank on its own thread with its own link (own io_context and sockets).
// Workers compute partial sums with a per-row function, so the test can compute the exact
// expected result (same inputs, same float operations, ranks added in order 1, 2, ...).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "common/comm/dispatch_layout.h"
#include "common/comm/tcp/tcp_dispatcher.h"
#include "common/comm/tcp/tcp_worker_link.h"
#include "gtest/gtest.h"

#define DSV2_ASSERT_OK(expr)              \
  do {                                    \
    const absl::Status dsv2_s_ = (expr);  \
    ASSERT_TRUE(dsv2_s_.ok()) << dsv2_s_; \
  } while (0)

namespace dsv2::comm_testing {

// A toy routed expert: expert e maps x to x * (0.5 + e / 8) + e.
inline float ExpertValue(int32_t e, float x) {
  return x * (0.5f + 0.125f * static_cast<float>(e)) + static_cast<float>(e);
}

// The partial sum of one token on one rank: out[hidden] = Σ over its slots of w · expert(x).
using RowFn = std::function<void(int rank, const float* x, const int32_t* expert,
                                 const float* weight, int64_t k, int64_t hidden, float* out)>;
inline void ExpertRow(int, const float* x, const int32_t* expert, const float* weight, int64_t k,
                      int64_t hidden, float* out) {
  for (int64_t j = 0; j < hidden; ++j) out[j] = 0.0f;
  for (int64_t s = 0; s < k; ++s) {
    if (expert[s] < 0) continue;
    for (int64_t j = 0; j < hidden; ++j) out[j] += weight[s] * ExpertValue(expert[s], x[j]);
  }
}

// x[t, j] = t * 1000 + j, exact in float for t, j < 4096: every value names its token.
inline std::vector<float> EncodedActivations(int64_t n, int64_t hidden) {
  std::vector<float> x(n * hidden);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < hidden; ++j) x[t * hidden + j] = static_cast<float>(t * 1000 + j);
  }
  return x;
}

struct Routing {
  std::vector<int32_t> expert;  // [n, k], distinct per token like a top-k
  std::vector<float> weight;    // [n, k]
};
inline Routing RandomRouting(std::mt19937& rng, int64_t n, int64_t k, int64_t n_experts) {
  Routing r;
  std::uniform_real_distribution<float> w(0.05f, 1.0f);
  std::vector<int32_t> ids(n_experts);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t e = 0; e < n_experts; ++e) ids[e] = static_cast<int32_t>(e);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int64_t s = 0; s < k; ++s) {
      r.expert.push_back(ids[s]);
      r.weight.push_back(w(rng));
    }
  }
  return r;
}

// `out` plus every worker rank's partial sums, added in rank order 1, 2, ...
inline std::vector<float> ExpectedCombine(const DispatchLayout& layout, const float* x,
                                          int64_t hidden, std::vector<float> out,
                                          const RowFn& row = ExpertRow) {
  const int64_t k = layout.top_k();
  std::vector<float> partial(hidden);
  for (int r = 1; r < layout.world_size(); ++r) {
    const std::vector<int64_t>& tokens = layout.tokens(r);
    for (size_t i = 0; i < tokens.size(); ++i) {
      row(r, x + tokens[i] * hidden, layout.expert(r).data() + i * k,
          layout.weight(r).data() + i * k, k, hidden, partial.data());
      for (int64_t j = 0; j < hidden; ++j) out[tokens[i] * hidden + j] += partial[j];
    }
  }
  return out;
}

// Σ over tokens of the distinct worker ranks (>= 1) among its experts, counted independently
// of DispatchLayout.
inline int64_t DistinctRemoteRanks(const ExpertPlacement& placement, const Routing& routing,
                                   int64_t k) {
  int64_t total = 0;
  for (size_t t = 0; t * k < routing.expert.size(); ++t) {
    std::vector<bool> seen(placement.world_size(), false);
    for (int64_t s = 0; s < k; ++s) {
      const int r = placement.RankOf(routing.expert[t * k + s]);
      if (r >= 1 && !seen[r]) ++total;
      seen[r] = true;
    }
  }
  return total;
}

enum class Reply { kAnswer, kClose, kSilent };

struct WorkerScript {
  RowFn row = ExpertRow;
  // What rank does after receiving `layer`: answer, drop its connection, or stay silent.
  std::function<Reply(int rank, int layer)> reply = [](int, int) { return Reply::kAnswer; };
  std::function<absl::Duration(int rank)> delay = [](int) { return absl::ZeroDuration(); };
  bool record = true;  // keep copies of what each worker received
};

struct ReceivedLayer {
  int layer = -1;
  int64_t n = 0, k = 0, hidden = 0;
  std::vector<float> x;
  std::vector<int32_t> expert;
  std::vector<float> weight;
};

struct WorkerResult {
  absl::Status end;  // why the loop ended (OK: drained)
  std::vector<ReceivedLayer> layers;
};

inline TcpWorkerOptions FastWorkerOptions() {
  TcpWorkerOptions o;
  o.bind_address = "127.0.0.1";
  o.accept_timeout = absl::Seconds(10);
  o.idle_timeout = absl::Milliseconds(200);
  o.timeout = absl::Seconds(10);
  return o;
}

inline TcpDispatcherOptions FastDispatcherOptions() {
  TcpDispatcherOptions o;
  o.connect_timeout = absl::Seconds(10);
  o.timeout = absl::Seconds(10);
  return o;
}

class TcpCluster {
 public:
  explicit TcpCluster(int world_size, WorkerScript script = {},
                      TcpWorkerOptions worker_options = FastWorkerOptions(),
                      TcpDispatcherOptions options = FastDispatcherOptions())
      : world_size_(world_size),
        script_(std::move(script)),
        worker_options_(worker_options),
        options_(options) {}
  ~TcpCluster() { Join(); }

  // Listens on loopback for every worker rank, starts their threads, connects rank 0.
  absl::Status Start();
  TcpExpertDispatcher& dispatcher() { return *dispatcher_; }
  // Destroys the coordinator side (its connections close).
  void DropCoordinator() { dispatcher_.reset(); }
  // Waits for the worker threads (drops the coordinator first); results by rank - 1.
  const std::vector<WorkerResult>& Join();

 private:
  void WorkerLoop(int rank);

  int world_size_;
  WorkerScript script_;
  TcpWorkerOptions worker_options_;
  TcpDispatcherOptions options_;
  std::vector<std::unique_ptr<TcpExpertWorkerLink>> links_;
  std::vector<WorkerResult> results_;
  std::vector<std::thread> threads_;
  std::unique_ptr<TcpExpertDispatcher> dispatcher_;
};

}  // namespace dsv2::comm_testing
