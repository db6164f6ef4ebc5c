// The coordinator side of the NCCL transport: rank 0 of a communicator whose ranks 1..W-1 are
// the workers (NcclExpertWorkerLink). x and out are device pointers; all work is enqueued on the
// rank's stream, and every exchange is waited for with a deadline (nonblocking communicator +
// event polling), so a dead or silent worker becomes UNAVAILABLE instead of a hang. Inputs must
// be complete when a call is made: produced on stream(), or synchronized before.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/comm/communicator.h"
#include "common/comm/nccl/nccl_util.h"

struct cublasContext;  // cublasHandle_t, kept out of this header

namespace dsv2 {

class NcclExpertDispatcher final : public ExpertDispatcher {
 public:
  // Joins the communicator as rank 0; every worker joins with the same unique id
  // (NewNcclUniqueId, shipped over the control plane) at the same time.
  static absl::StatusOr<std::unique_ptr<NcclExpertDispatcher>> Create(
      const std::string& unique_id, int world_size, const NcclOptions& options = {});
  ~NcclExpertDispatcher() override;

  int world_size() const override;
  cudaStream_t stream() const;
  // x: device [n_tokens, hidden]. Rows are gathered per rank on the stream (one copy per run
  // of consecutive tokens), then sent with grouped ncclSend after a grouped header exchange.
  absl::Status Dispatch(int layer, const DispatchLayout& layout, const float* x,
                        int64_t hidden) override;
  // out: device [n_tokens, hidden]. The partial sums are received with grouped ncclRecv, then
  // added on the stream in rank order (cuBLAS axpy with alpha 1 per run of consecutive tokens,
  // bit-identical to out += partial), and waited for: `out` is complete on return.
  absl::Status Combine(int layer, const DispatchLayout& layout, float* out,
                       int64_t hidden) override;
  absl::Status Drain() override;
  CommStats stats() const override;

 private:
  struct PerRank {
    comm_nccl::DeviceBuffer x;        // [m, hidden] gathered rows
    comm_nccl::DeviceBuffer expert;   // [m, k] int32
    comm_nccl::DeviceBuffer weight;   // [m, k] float
    comm_nccl::DeviceBuffer partial;  // [m, hidden] received partial sums
  };
  NcclExpertDispatcher() = default;
  absl::Status CheckCall(const DispatchLayout& layout, const void* data, int64_t hidden) const;
  // Sends one header per worker (type, layer, per-rank count) in one group.
  absl::Status SendHeaders(int64_t type, int layer, const DispatchLayout* layout, int64_t hidden,
                           absl::Time deadline);
  // Waits for everything enqueued; on timeout aborts the communicator (UNAVAILABLE).
  absl::Status Wait(const std::string& what, absl::Time deadline);
  absl::Status Fail(absl::Status status);
  void Count(int layer, const CommCounters& delta);

  std::unique_ptr<comm_nccl::NcclRank> rank_;
  cublasContext* cublas_ = nullptr;
  comm_nccl::Event done_;
  std::vector<PerRank> buffers_;         // [world]
  comm_nccl::DeviceBuffer headers_out_;  // [world, kHeaderWords] int64
  comm_nccl::DeviceBuffer headers_in_;   // [world, kHeaderWords] int64
  std::vector<int64_t> host_headers_;    // [world, kHeaderWords]
  absl::Status broken_;
  mutable std::mutex stats_mu_;
  CommStats stats_;
};

}  // namespace dsv2
