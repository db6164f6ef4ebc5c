// The NCCL communicator. NCCL refuses two ranks of one communicator on the same device, so the
// exchange tests need >= 2 CUDA devices; without them (CI, no driver) they skip and say why.
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/comm_tcp_harness.h"
#ifdef DSV2_COMM_HAVE_NCCL
#include "common/comm/nccl/nccl_dispatcher.h"
#include "common/comm/nccl/nccl_worker_link.h"
#endif

namespace dsv2 {
namespace {

#ifndef DSV2_COMM_HAVE_NCCL

TEST(CommNcclTest, BuiltWithoutNccl) {
  GTEST_SKIP() << "dsv2_comm was built without NCCL (DSV2_WITH_NCCL=OFF or NCCL not found)";
}

#else

// The number of devices; 0 (with the reason in *why) when the runtime reports any error.
int Devices(std::string* why) {
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) {
    *why = std::string(count.status().message());
    return 0;
  }
  *why = absl::StrCat(*count, " CUDA device(s)");
  return *count;
}

#define DSV2_SKIP_UNLESS_DEVICES(needed)                                                     \
  do {                                                                                       \
    std::string why_;                                                                        \
    if (Devices(&why_) < (needed)) {                                                         \
      GTEST_SKIP() << "needs " << (needed) << " CUDA devices (one per NCCL rank); " << why_; \
    }                                                                                        \
  } while (0)

TEST(CommNcclTest, DeviceCountIsAStatusNeverACrash) {
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) {
    EXPECT_TRUE(absl::IsFailedPrecondition(count.status())) << count.status();
    GTEST_SKIP() << count.status().message();
  }
  EXPECT_GE(*count, 0);
}

TEST(CommNcclTest, CreateFailsCleanlyOnBadInputOrWithoutDevice) {
  auto bad_id = NcclExpertDispatcher::Create("short", 2);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_id.status())) << bad_id.status();
  std::string why;
  if (Devices(&why) > 0) GTEST_SKIP() << "a device is present; this checks the no-device path";
  auto d = NcclExpertDispatcher::Create(std::string(sizeof(ncclUniqueId::internal), '\0'), 2);
  EXPECT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), ::testing::HasSubstr("cudaSetDevice"));
}

// Copies host floats to a fresh device buffer (owned by `keep`).
float* ToDevice(const std::vector<float>& host, comm_nccl::DeviceBuffer& keep) {
  EXPECT_TRUE(keep.Reserve(std::max<size_t>(1, host.size()) * sizeof(float)).ok());
  cudaMemcpy(keep.as<float>(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaDeviceSynchronize();  // a pageable copy may still be in flight when cudaMemcpy returns
  return keep.as<float>();
}

// Worker rank `rank` on device `rank`: answers every layer with ExpertRow partial sums.
void NcclWorker(const std::string& id, int rank, int world, absl::Status* end) {
  NcclOptions o;
  o.device = rank;
  auto link = NcclExpertWorkerLink::Create(id, rank, world, o);
  if (!link.ok()) {
    *end = link.status();
    return;
  }
  std::vector<float> x, partial;
  comm_nccl::DeviceBuffer partial_dev;
  while (true) {
    absl::StatusOr<DispatchedTokens> got = (*link)->ReceiveDispatch();
    if (!got.ok() && absl::IsDeadlineExceeded(got.status())) continue;
    if (!got.ok() || got->drain) {
      *end = got.status();
      return;
    }
    const int64_t n = got->n, k = got->k, hidden = got->hidden;
    x.resize(n * hidden);
    partial.resize(n * hidden);
    cudaMemcpy(x.data(), got->x, x.size() * sizeof(float), cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < n; ++i) {
      comm_testing::ExpertRow(rank, x.data() + i * hidden, got->expert + i * k, got->weight + i * k,
                              k, hidden, partial.data() + i * hidden);
    }
    *end = (*link)->SendCombine(got->layer, ToDevice(partial, partial_dev), n, hidden);
    if (!end->ok()) return;
  }
}

TEST(CommNcclTest, DispatchCombineAcrossDevicesIsBitExact) {
  DSV2_SKIP_UNLESS_DEVICES(2);
  std::string why;
  const int world = std::min(Devices(&why), 4);
  absl::StatusOr<std::string> id = NewNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<absl::Status> ends(world);
  std::vector<std::thread> workers;
  for (int r = 1; r < world; ++r) workers.emplace_back(NcclWorker, *id, r, world, &ends[r]);
  auto d = NcclExpertDispatcher::Create(*id, world);
  ASSERT_TRUE(d.ok()) << d.status();

  const int64_t n = 257, k = 4, hidden = 128, n_experts = 16;
  const ExpertPlacement p = *ExpertPlacement::Contiguous(n_experts, world, false);
  std::mt19937 rng(11);
  comm_nccl::DeviceBuffer x_dev, out_dev;
  for (int layer = 0; layer < 3; ++layer) {
    const comm_testing::Routing routing = comm_testing::RandomRouting(rng, n, k, n_experts);
    auto layout = DispatchLayout::Compute(p, routing.expert.data(), routing.weight.data(), n, k);
    ASSERT_TRUE(layout.ok()) << layout.status();
    const std::vector<float> x = comm_testing::EncodedActivations(n, hidden);
    std::vector<float> out(n * hidden, 0.0f);
    const std::vector<float> want = comm_testing::ExpectedCombine(*layout, x.data(), hidden, out);
    DSV2_ASSERT_OK((*d)->Dispatch(layer, *layout, ToDevice(x, x_dev), hidden));
    DSV2_ASSERT_OK((*d)->Combine(layer, *layout, ToDevice(out, out_dev), hidden));
    ASSERT_EQ(cudaStreamSynchronize((*d)->stream()), cudaSuccess);
    cudaMemcpy(out.data(), out_dev.as<float>(), out.size() * sizeof(float), cudaMemcpyDeviceToHost);
    EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * sizeof(float)));
  }
  DSV2_ASSERT_OK((*d)->Drain());
  for (std::thread& t : workers) t.join();
  for (int r = 1; r < world; ++r) EXPECT_TRUE(ends[r].ok()) << "rank " << r << ": " << ends[r];
}

#endif  // DSV2_COMM_HAVE_NCCL

}  // namespace
}  // namespace dsv2
