// The LeaderWorkerSet group's worker addresses, derived from the variables LWS sets.
#include "coordinator/expert_parallel/lws_group.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(LwsGroupTest, WorkersAreTheLeadersPodNameWithTheirIndex) {
  auto a = LwsWorkerAddresses("dsv2-ep-0.dsv2-ep.serving", "4", 50061);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(*a,
              ElementsAre("dsv2-ep-0-1.dsv2-ep.serving:50061", "dsv2-ep-0-2.dsv2-ep.serving:50061",
                          "dsv2-ep-0-3.dsv2-ep.serving:50061"));
  auto bare = LwsWorkerAddresses("dsv2-ep-2", "2", 7);
  ASSERT_TRUE(bare.ok());
  EXPECT_THAT(*bare, ElementsAre("dsv2-ep-2-1:7"));
}

TEST(LwsGroupTest, MissingOrBadVariablesAreNamed) {
  EXPECT_THAT(LwsWorkerAddresses(nullptr, "4", 1).status().message(),
              HasSubstr("LWS_LEADER_ADDRESS"));
  EXPECT_THAT(LwsWorkerAddresses("a.b", "one", 1).status().message(), HasSubstr("LWS_GROUP_SIZE"));
  EXPECT_THAT(LwsWorkerAddresses("a.b", "1", 1).status().message(), HasSubstr(">= 2"));
  EXPECT_THAT(LwsWorkerAddresses(".b", "3", 1).status().message(), HasSubstr("no pod name"));
}

}  // namespace
}  // namespace dsv2
