// The communicator's pure parts: expert placement, dispatch layout, TCP frame encoding.
#include <random>
#include <set>
#include <vector>

#include "common/comm/dispatch_layout.h"
#include "common/comm/expert_placement.h"
#include "common/comm/tcp/frame.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/comm_tcp_harness.h"

namespace dsv2 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<int64_t> Sizes(const ExpertPlacement& p) {
  std::vector<int64_t> sizes;
  for (int r = 0; r < p.world_size(); ++r) sizes.push_back(p.Range(r).size());
  return sizes;
}

TEST(CommPlacementTest, EvenSplitOverWorkers) {
  absl::StatusOr<ExpertPlacement> p = ExpertPlacement::Contiguous(64, 3, false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(Sizes(*p), ElementsAre(0, 32, 32));
  EXPECT_FALSE(p->coordinator_hosts_experts());
  EXPECT_EQ(p->Range(2).begin, 32);
  EXPECT_EQ(p->Range(2).end, 64);
}

TEST(CommPlacementTest, UnevenSplitGivesTheFirstRanksOneMore) {
  absl::StatusOr<ExpertPlacement> p = ExpertPlacement::Contiguous(10, 4, false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(Sizes(*p), ElementsAre(0, 4, 3, 3));
  p = ExpertPlacement::Contiguous(10, 4, true);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(Sizes(*p), ElementsAre(3, 3, 2, 2));
  EXPECT_TRUE(p->coordinator_hosts_experts());
}

TEST(CommPlacementTest, RankOfAgreesWithRange) {
  for (int world = 1; world <= 6; ++world) {
    for (bool host : {false, true}) {
      absl::StatusOr<ExpertPlacement> p = ExpertPlacement::Contiguous(13, world, host);
      if (world == 1 && !host) continue;
      ASSERT_TRUE(p.ok()) << p.status();
      int64_t covered = 0;
      for (int r = 0; r < world; ++r) {
        for (int64_t e = p->Range(r).begin; e < p->Range(r).end; ++e) {
          EXPECT_EQ(p->RankOf(e), r) << "expert " << e << " world " << world;
          ++covered;
        }
      }
      EXPECT_EQ(covered, 13);
      EXPECT_EQ(p->RankOf(-1), -1);
      EXPECT_EQ(p->RankOf(13), -1);
    }
  }
}

TEST(CommPlacementTest, ErrorsNameTheProblem) {
  auto p = ExpertPlacement::Contiguous(4, 6, false);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status()));
  EXPECT_THAT(p.status().message(), HasSubstr("more expert-hosting ranks (5) than experts (4)"));
  p = ExpertPlacement::Contiguous(0, 2, false);
  EXPECT_THAT(p.status().message(), HasSubstr("n_experts must be >= 1"));
  p = ExpertPlacement::Contiguous(8, 0, false);
  EXPECT_THAT(p.status().message(), HasSubstr("world_size must be >= 1"));
  p = ExpertPlacement::Contiguous(8, 1, false);
  EXPECT_THAT(p.status().message(), HasSubstr("no rank"));
  EXPECT_TRUE(ExpertPlacement::Contiguous(8, 1, true).ok());  // standalone
  EXPECT_THAT(ExpertPlacement::FromBoundaries({0, 5, 3}).status().message(),
              HasSubstr("decrease at rank 1"));
  EXPECT_TRUE(ExpertPlacement::FromBoundaries({0, 0, 5, 5, 9}).ok());
}

TEST(CommLayoutTest, HandWorkedExample) {
  // 8 experts over ranks 1..2: rank 1 hosts 0..3, rank 2 hosts 4..7.
  const ExpertPlacement p = *ExpertPlacement::Contiguous(8, 3, false);
  const std::vector<int32_t> expert = {1, 5,   // token 0: ranks 1 and 2
                                       2, 3,   // token 1: rank 1 twice → sent once
                                       7, 6};  // token 2: rank 2 twice
  const std::vector<float> weight = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  absl::StatusOr<DispatchLayout> l = DispatchLayout::Compute(p, expert.data(), weight.data(), 3, 2);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_THAT(l->tokens_per_rank(), ElementsAre(0, 2, 2));
  EXPECT_THAT(l->tokens(1), ElementsAre(0, 1));
  EXPECT_THAT(l->expert(1), ElementsAre(1, -1, 2, 3));
  EXPECT_THAT(l->weight(1), ElementsAre(0.1f, 0.0f, 0.3f, 0.4f));
  EXPECT_THAT(l->tokens(2), ElementsAre(0, 2));
  EXPECT_THAT(l->expert(2), ElementsAre(-1, 5, 7, 6));
  EXPECT_THAT(l->weight(2), ElementsAre(0.0f, 0.2f, 0.5f, 0.6f));
  EXPECT_THAT(l->tokens_per_expert(), ElementsAre(0, 1, 1, 1, 0, 1, 1, 1));
  EXPECT_EQ(l->dedupe_bound(), 4);  // not 6 (token, slot) pairs
  EXPECT_EQ(l->bytes_dispatched(16, 4), 4 * 16 * 4);
}

TEST(CommLayoutTest, RandomRoutingMatchesTheDefinition) {
  std::mt19937 rng(7);
  for (bool host : {false, true}) {
    const ExpertPlacement p = *ExpertPlacement::Contiguous(20, 4, host);
    const int64_t n = 300, k = 6;
    const comm_testing::Routing routing = comm_testing::RandomRouting(rng, n, k, 20);
    absl::StatusOr<DispatchLayout> l =
        DispatchLayout::Compute(p, routing.expert.data(), routing.weight.data(), n, k);
    ASSERT_TRUE(l.ok()) << l.status();
    int64_t sent = 0;
    for (int r = 0; r < 4; ++r) {
      std::vector<int64_t> want;  // tokens with a slot on r, ascending
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t s = 0; s < k; ++s) {
          if (p.RankOf(routing.expert[t * k + s]) == r) {
            want.push_back(t);
            break;
          }
        }
      }
      ASSERT_EQ(l->tokens(r), want) << "rank " << r;
      for (size_t i = 0; i < want.size(); ++i) {
        for (int64_t s = 0; s < k; ++s) {
          const int32_t e = routing.expert[want[i] * k + s];
          const bool mine = p.RankOf(e) == r;
          EXPECT_EQ(l->expert(r)[i * k + s], mine ? e : -1);
          EXPECT_EQ(l->weight(r)[i * k + s], mine ? routing.weight[want[i] * k + s] : 0.0f);
        }
      }
      sent += static_cast<int64_t>(want.size());
    }
    EXPECT_EQ(l->dedupe_bound(), sent);
    EXPECT_EQ(l->bytes_dispatched(8, 4), comm_testing::DistinctRemoteRanks(p, routing, k) * 8 * 4);
  }
}

TEST(CommLayoutTest, RejectsBadInput) {
  const ExpertPlacement p = *ExpertPlacement::Contiguous(8, 3, false);
  const std::vector<int32_t> expert = {1, 8};
  const std::vector<float> weight = {0.5f, 0.5f};
  auto l = DispatchLayout::Compute(p, expert.data(), weight.data(), 1, 2);
  EXPECT_TRUE(absl::IsInvalidArgument(l.status()));
  EXPECT_THAT(l.status().message(), HasSubstr("expert id 8 of token 0 slot 1"));
  EXPECT_FALSE(DispatchLayout::Compute(p, expert.data(), weight.data(), 1, 0).ok());
  EXPECT_FALSE(DispatchLayout::Compute(p, nullptr, nullptr, 1, 2).ok());
  l = DispatchLayout::Compute(p, nullptr, nullptr, 0, 2);  // an empty batch is fine
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_THAT(l->tokens_per_rank(), ElementsAre(0, 0, 0));
}

TEST(CommFrameTest, HeaderRoundTripsAndValidates) {
  using comm_tcp::FrameHeader;
  using comm_tcp::FrameType;
  const FrameHeader h{.type = FrameType::kDispatch,
                      .layer = 7,
                      .sender_rank = 0,
                      .count = 3,
                      .hidden = 16,
                      .top_k = 2,
                      .payload_bytes = comm_tcp::DispatchPayloadBytes(3, 16, 2)};
  comm_tcp::HeaderBytes bytes = comm_tcp::EncodeHeader(h);
  absl::StatusOr<FrameHeader> back = comm_tcp::DecodeHeader(bytes, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->layer, 7);
  EXPECT_EQ(back->count, 3);
  EXPECT_EQ(back->payload_bytes, 3 * (16 * 4 + 2 * 8));
  EXPECT_TRUE(absl::IsResourceExhausted(comm_tcp::DecodeHeader(bytes, 100).status()));

  FrameHeader wrong = h;
  wrong.payload_bytes += 4;
  EXPECT_THAT(comm_tcp::DecodeHeader(comm_tcp::EncodeHeader(wrong), 1 << 20).status().message(),
              HasSubstr("its layout needs 240"));
  bytes[0] ^= 0xff;
  EXPECT_THAT(comm_tcp::DecodeHeader(bytes, 1 << 20).status().message(), HasSubstr("magic"));
}

}  // namespace
}  // namespace dsv2
