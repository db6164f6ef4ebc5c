// The expert-parallel data plane choice (coordinator/expert_parallel/data_plane.h): NCCL only
// when every rank has a GPU of its own and NCCL; auto falls back to TCP, nccl names the rank.
#include "coordinator/expert_parallel/data_plane.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;

RankDevice Gpu(const char* uuid) { return {.gpu = true, .gpu_uuid = uuid, .nccl_built = true}; }
RankDevice Cpu() { return {.gpu = false, .gpu_uuid = "", .nccl_built = true}; }

TEST(DataPlaneTest, EveryRankOnItsOwnGpuIsNcclUnderAutoAndNccl) {
  const std::vector<RankDevice> ranks = {Gpu("aa"), Gpu("bb"), Gpu("cc")};
  EXPECT_EQ(ChooseDataPlane("auto", ranks).value(), DataPlane::kNccl);
  EXPECT_EQ(ChooseDataPlane("nccl", ranks).value(), DataPlane::kNccl);
  EXPECT_EQ(ChooseDataPlane("tcp", ranks).value(), DataPlane::kTcp);
  EXPECT_STREQ(DataPlaneName(DataPlane::kNccl), "nccl");
}

TEST(DataPlaneTest, AutoFallsBackToTcpAndNcclNamesTheRankThatCannotJoin) {
  // A CPU coordinator.
  std::vector<RankDevice> ranks = {Cpu(), Gpu("bb")};
  EXPECT_EQ(ChooseDataPlane("auto", ranks).value(), DataPlane::kTcp);
  absl::StatusOr<DataPlane> p = ChooseDataPlane("nccl", ranks);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(p.status().message(), HasSubstr("the coordinator (rank 0) is on the CPU"));
  // Two workers sharing one GPU (three processes on one GPU: the TCP test setup).
  ranks = {Gpu("aa"), Gpu("bb"), Gpu("bb")};
  EXPECT_EQ(ChooseDataPlane("auto", ranks).value(), DataPlane::kTcp);
  p = ChooseDataPlane("nccl", ranks);
  EXPECT_THAT(p.status().message(),
              HasSubstr("worker rank 2 shares its GPU (bb) with worker rank 1"));
  // A worker built without NCCL.
  ranks = {Gpu("aa"), {.gpu = true, .gpu_uuid = "bb", .nccl_built = false}};
  EXPECT_EQ(ChooseDataPlane("auto", ranks).value(), DataPlane::kTcp);
  EXPECT_THAT(ChooseDataPlane("nccl", ranks).status().message(),
              HasSubstr("worker rank 1 was built without NCCL"));
  EXPECT_EQ(ChooseDataPlane("infiniband", ranks).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsv2
