// The worker side of the NCCL transport: rank r >= 1 of the communicator the coordinator's
// NcclExpertDispatcher created. DispatchedTokens::x and SendCombine's partial are device
// pointers; expert ids and weights are copied to the host (the expert loop groups by them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/comm/communicator.h"
#include "common/comm/nccl/nccl_util.h"

namespace dsv2 {

class NcclExpertWorkerLink final : public ExpertWorkerLink {
 public:
  static absl::StatusOr<std::unique_ptr<NcclExpertWorkerLink>> Create(
      const std::string& unique_id, int rank, int world_size, const NcclOptions& options = {});

  int rank() const override { return rank_->rank(); }
  int world_size() const override { return rank_->world_size(); }
  cudaStream_t stream() const { return rank_->stream(); }
  // The header receive stays posted across a DEADLINE_EXCEEDED (idle), so nothing is lost.
  absl::StatusOr<DispatchedTokens> ReceiveDispatch() override;
  absl::Status SendCombine(int layer, const float* partial, int64_t n, int64_t hidden) override;
  // Gives the communicator up at once (a posted receive ends): for a session the coordinator
  // replaced, whose peers may be gone, so that finalizing would only wait.
  void Abort();

 private:
  NcclExpertWorkerLink() = default;
  absl::Status Fail(absl::Status status);
  absl::Status WaitFor(comm_nccl::Event& event, const std::string& what, absl::Time deadline);

  std::unique_ptr<comm_nccl::NcclRank> rank_;
  comm_nccl::Event header_done_;
  comm_nccl::Event done_;
  comm_nccl::DeviceBuffer header_in_;   // int64 [kHeaderWords]
  comm_nccl::DeviceBuffer header_out_;  // int64 [kHeaderWords]
  comm_nccl::DeviceBuffer x_;           // [n, hidden]
  comm_nccl::DeviceBuffer expert_dev_;  // [n, k] int32
  comm_nccl::DeviceBuffer weight_dev_;  // [n, k] float
  std::vector<int32_t> expert_;         // [n, k] host copies
  std::vector<float> weight_;           // [n, k]
  bool header_posted_ = false;
  bool awaiting_combine_ = false;
  int last_layer_ = -1;
  int64_t last_n_ = 0;
  int64_t last_hidden_ = 0;
  absl::Status broken_;
};

}  // namespace dsv2
