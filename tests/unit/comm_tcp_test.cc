// The TCP communicator over loopback: rank-encoded activations, real sockets, one thread per
// worker rank. Results must be bit-identical to adding the partial sums in rank order.
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/comm/tcp/frame.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/comm_tcp_harness.h"

namespace dsv2 {
namespace {

using comm_testing::ExpectedCombine;
using comm_testing::Routing;
using comm_testing::TcpCluster;
using ::testing::HasSubstr;

constexpr int64_t kHeader = comm_tcp::kFrameHeaderBytes;

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// One layer through the cluster: dispatch, optional local (rank 0) partial, combine; checks the
// result bit for bit, the rows every worker received, and the bytes on the wire.
void RunLayer(TcpCluster& cluster, const ExpertPlacement& p, int layer, const Routing& routing,
              int64_t n, int64_t k, int64_t hidden) {
  const std::vector<float> x = comm_testing::EncodedActivations(n, hidden);  // [n, hidden]
  absl::StatusOr<DispatchLayout> layout =
      DispatchLayout::Compute(p, routing.expert.data(), routing.weight.data(), n, k);
  ASSERT_TRUE(layout.ok()) << layout.status();
  std::vector<float> out(n * hidden, 0.0f);  // [n, hidden]
  if (p.coordinator_hosts_experts()) {       // rank 0's partial goes in first
    const std::vector<int64_t>& tokens = layout->tokens(0);
    for (size_t i = 0; i < tokens.size(); ++i) {
      comm_testing::ExpertRow(0, x.data() + tokens[i] * hidden, layout->expert(0).data() + i * k,
                              layout->weight(0).data() + i * k, k, hidden,
                              out.data() + tokens[i] * hidden);
    }
  }
  const std::vector<float> want = ExpectedCombine(*layout, x.data(), hidden, out);
  DSV2_ASSERT_OK(cluster.dispatcher().Dispatch(layer, *layout, x.data(), hidden));
  DSV2_ASSERT_OK(cluster.dispatcher().Combine(layer, *layout, out.data(), hidden));
  EXPECT_TRUE(BitEqual(out, want)) << "layer " << layer;

  // Bytes: one header per worker plus each token once per distinct worker rank it selected.
  const int64_t workers = p.world_size() - 1;
  const int64_t rows = comm_testing::DistinctRemoteRanks(p, routing, k);
  const CommCounters c = cluster.dispatcher().stats().layers.at(layer);
  EXPECT_EQ(c.bytes_sent, workers * kHeader + rows * (hidden * 4 + k * 8));
  EXPECT_LE(c.bytes_sent, layout->bytes_dispatched(hidden, 4) + rows * k * 8 + workers * kHeader);
  EXPECT_EQ(c.bytes_received, workers * kHeader + rows * hidden * 4);
  EXPECT_EQ(c.messages_sent, workers);
  EXPECT_EQ(c.messages_received, workers);
}

// What each worker must have received for one layer: its tokens' rows, ascending, and slots.
void CheckReceived(const std::vector<comm_testing::WorkerResult>& workers, const ExpertPlacement& p,
                   size_t index, int layer, const Routing& routing, int64_t n, int64_t k,
                   int64_t hidden) {
  const std::vector<float> x = comm_testing::EncodedActivations(n, hidden);
  for (size_t w = 0; w < workers.size(); ++w) {
    const int rank = static_cast<int>(w) + 1;
    ASSERT_GT(workers[w].layers.size(), index);
    const comm_testing::ReceivedLayer& got = workers[w].layers[index];
    EXPECT_EQ(got.layer, layer);
    int64_t i = 0;
    for (int64_t t = 0; t < n; ++t) {
      bool mine = false;
      for (int64_t s = 0; s < k; ++s) mine |= p.RankOf(routing.expert[t * k + s]) == rank;
      if (!mine) continue;
      ASSERT_LT(i, got.n) << "rank " << rank << " is missing token " << t;
      EXPECT_EQ(0, std::memcmp(got.x.data() + i * hidden, x.data() + t * hidden, hidden * 4))
          << "rank " << rank << " row " << i << " is not token " << t;
      for (int64_t s = 0; s < k; ++s) {
        const int32_t e = routing.expert[t * k + s];
        EXPECT_EQ(got.expert[i * k + s], p.RankOf(e) == rank ? e : -1);
      }
      ++i;
    }
    EXPECT_EQ(i, got.n) << "rank " << rank << " received extra tokens";
  }
}

struct WorldCase {
  int world;
  bool coordinator_hosts;
};

class CommTcpWorldTest : public ::testing::TestWithParam<WorldCase> {};

TEST_P(CommTcpWorldTest, RandomRoutingOverSeveralLayersThenDrain) {
  const WorldCase wc = GetParam();
  const int64_t n_experts = 16, k = 4, hidden = 24;
  const ExpertPlacement p = *ExpertPlacement::Contiguous(n_experts, wc.world, wc.coordinator_hosts);
  TcpCluster cluster(wc.world);
  DSV2_ASSERT_OK(cluster.Start());
  std::mt19937 rng(100 + wc.world);
  std::vector<Routing> routings;
  const std::vector<int64_t> sizes = {37, 1, 64};
  for (int layer = 0; layer < 3; ++layer) {
    routings.push_back(comm_testing::RandomRouting(rng, sizes[layer], k, n_experts));
    RunLayer(cluster, p, layer, routings.back(), sizes[layer], k, hidden);
  }
  EXPECT_EQ(cluster.dispatcher().stats().layers.size(), 3u);
  DSV2_ASSERT_OK(cluster.dispatcher().Drain());
  EXPECT_TRUE(absl::IsFailedPrecondition(cluster.dispatcher().Drain()));
  const auto& workers = cluster.Join();
  for (size_t w = 0; w < workers.size(); ++w) {
    EXPECT_TRUE(workers[w].end.ok()) << "rank " << w + 1 << ": " << workers[w].end;
    EXPECT_EQ(workers[w].layers.size(), 3u);
  }
  for (int layer = 0; layer < 3; ++layer) {
    CheckReceived(workers, p, layer, layer, routings[layer], sizes[layer], k, hidden);
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, CommTcpWorldTest,
                         ::testing::Values(WorldCase{2, false}, WorldCase{3, false},
                                           WorldCase{4, false}, WorldCase{3, true}),
                         [](const auto& info) {
                           return absl::StrCat("world", info.param.world,
                                               info.param.coordinator_hosts ? "_hosting" : "");
                         });

// Every token picks only experts of `rank`: the other workers get zero tokens (they still take
// part), and the k slots on one rank travel as one row.
void RouteAllTo(int world, int rank) {
  const int64_t n_experts = 12, k = 3, n = 50, hidden = 8;
  const ExpertPlacement p = *ExpertPlacement::Contiguous(n_experts, world, false);
  Routing routing;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t s = 0; s < k; ++s) {
      routing.expert.push_back(static_cast<int32_t>(p.Range(rank).begin + s));
      routing.weight.push_back(0.25f * static_cast<float>(s + 1));
    }
  }
  TcpCluster cluster(world);
  DSV2_ASSERT_OK(cluster.Start());
  RunLayer(cluster, p, 0, routing, n, k, hidden);
  const CommCounters c = cluster.dispatcher().stats().layers.at(0);
  EXPECT_EQ(c.bytes_sent, (world - 1) * kHeader + n * (hidden * 4 + k * 8));  // once per token
  EXPECT_LT(c.bytes_sent, n * k * hidden * 4);  // what sending per (token, slot) would cost
  DSV2_ASSERT_OK(cluster.dispatcher().Drain());
  const auto& workers = cluster.Join();
  for (size_t w = 0; w < workers.size(); ++w) {
    EXPECT_EQ(workers[w].layers.at(0).n, static_cast<int>(w) + 1 == rank ? n : 0);
  }
  CheckReceived(workers, p, 0, 0, routing, n, k, hidden);
}

TEST(CommTcpTest, AllTokensToOneRankAndOthersReceiveNothing) {
  RouteAllTo(4, 1);
  RouteAllTo(4, 3);
  RouteAllTo(2, 1);
}

TEST(CommTcpTest, EmptyBatch) {
  const ExpertPlacement p = *ExpertPlacement::Contiguous(8, 3, false);
  TcpCluster cluster(3);
  DSV2_ASSERT_OK(cluster.Start());
  RunLayer(cluster, p, 5, Routing{}, 0, 2, 16);
}

TEST(CommTcpTest, CombineAddsInRankOrderWhateverTheArrivalOrder) {
  // Partial sums a = 1e8, b = 5, c = -1e8 from ranks 1, 2, 3: in rank order (a + b) + c = 8
  // (1e8 + 5 rounds to 1e8 + 8), while the arrival order forced below (3, then 1, then 2)
  // would give (c + a) + b = 5.
  comm_testing::WorkerScript script;
  script.row = [](int rank, const float*, const int32_t*, const float*, int64_t, int64_t hidden,
                  float* out) {
    const float v = rank == 1 ? 1e8f : rank == 2 ? 5.0f : -1e8f;
    for (int64_t j = 0; j < hidden; ++j) out[j] = v;
  };
  script.delay = [](int rank) {
    return rank == 3 ? absl::ZeroDuration() : absl::Milliseconds(rank == 1 ? 100 : 300);
  };
  const int64_t n = 20, k = 3, hidden = 32;
  const ExpertPlacement p = *ExpertPlacement::Contiguous(3, 4, false);  // expert e on rank e+1
  Routing routing;
  for (int64_t t = 0; t < n; ++t) {
    routing.expert.insert(routing.expert.end(), {2, 0, 1});
    routing.weight.insert(routing.weight.end(), {1.0f, 1.0f, 1.0f});
  }
  TcpCluster cluster(4, script);
  DSV2_ASSERT_OK(cluster.Start());
  auto layout = DispatchLayout::Compute(p, routing.expert.data(), routing.weight.data(), n, k);
  ASSERT_TRUE(layout.ok());
  const std::vector<float> x = comm_testing::EncodedActivations(n, hidden);
  std::vector<float> out(n * hidden, 0.0f);
  const std::vector<float> want = ExpectedCombine(*layout, x.data(), hidden, out, script.row);
  ASSERT_EQ(want[0], 8.0f);
  ASSERT_NE((-1e8f + 1e8f) + 5.0f, want[0]);  // the arrival order would differ
  DSV2_ASSERT_OK(cluster.dispatcher().Dispatch(0, *layout, x.data(), hidden));
  DSV2_ASSERT_OK(cluster.dispatcher().Combine(0, *layout, out.data(), hidden));
  EXPECT_TRUE(BitEqual(out, want));
}

TEST(CommTcpTest, LargeMessagesDoNotDeadlock) {
  // 2048 tokens x 2048 hidden: ~16 MiB to and from each of 3 workers per layer, far beyond the
  // socket buffers, so a sequential writer would block on rank 1 while rank 2 waits.
  const int64_t n = 2048, hidden = 2048, k = 6, n_experts = 64;
  const ExpertPlacement p = *ExpertPlacement::Contiguous(n_experts, 4, false);
  comm_testing::WorkerScript script;
  script.record = false;
  TcpDispatcherOptions options = comm_testing::FastDispatcherOptions();
  options.timeout = absl::Seconds(60);
  TcpWorkerOptions worker_options = comm_testing::FastWorkerOptions();
  worker_options.timeout = absl::Seconds(60);
  TcpCluster cluster(4, script, worker_options, options);
  DSV2_ASSERT_OK(cluster.Start());
  std::mt19937 rng(3);
  for (int layer = 0; layer < 2; ++layer) {
    RunLayer(cluster, p, layer, comm_testing::RandomRouting(rng, n, k, n_experts), n, k, hidden);
  }
  EXPECT_GT(cluster.dispatcher().stats().total.bytes_sent, 2 * 3 * 2048 * 2048 * 4 * 9 / 10);
}

}  // namespace
}  // namespace dsv2
