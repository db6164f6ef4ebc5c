#include "common/comm/nccl/nccl_worker_link.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dsv2 {

using comm_nccl::kHeaderWords;

absl::StatusOr<std::unique_ptr<NcclExpertWorkerLink>> NcclExpertWorkerLink::Create(
    const std::string& unique_id, int rank, int world_size, const NcclOptions& options) {
  if (rank < 1) return absl::InvalidArgumentError(absl::StrCat("worker rank must be >= 1: ", rank));
  std::unique_ptr<NcclExpertWorkerLink> link(new NcclExpertWorkerLink());
  DSV2_ASSIGN_OR_RETURN(link->rank_,
                        comm_nccl::NcclRank::Create(unique_id, rank, world_size, options));
  DSV2_RETURN_IF_ERROR(link->header_done_.Init());
  DSV2_RETURN_IF_ERROR(link->done_.Init());
  DSV2_RETURN_IF_ERROR(link->header_in_.Reserve(kHeaderWords * sizeof(int64_t)));
  DSV2_RETURN_IF_ERROR(link->header_out_.Reserve(kHeaderWords * sizeof(int64_t)));
  return link;
}

absl::Status NcclExpertWorkerLink::Fail(absl::Status status) {
  if (!status.ok() && broken_.ok()) {
    rank_->Abort();
    broken_ = status;
  }
  return status;
}

absl::Status NcclExpertWorkerLink::WaitFor(comm_nccl::Event& event, const std::string& what,
                                           absl::Time deadline) {
  bool timed_out = false;
  absl::Status s = rank_->Poll(event.get(), deadline, &timed_out);
  if (s.ok() && timed_out) {
    s = absl::UnavailableError(absl::StrCat("expert-parallel rank 0 (coordinator), seen by rank ",
                                            rank(), ": ", what, " did not complete within ",
                                            absl::FormatDuration(rank_->options().timeout)));
  }
  return Fail(s);
}

void NcclExpertWorkerLink::Abort() {
  Fail(absl::UnavailableError("the link was given up (a newer session replaced it)")).IgnoreError();
}

absl::StatusOr<DispatchedTokens> NcclExpertWorkerLink::ReceiveDispatch() {
  DSV2_RETURN_IF_ERROR(broken_);
  DSV2_RETURN_IF_ERROR(rank_->Activate());
  cudaStream_t stream = rank_->stream();
  ncclComm_t comm = rank_->comm();
  int64_t* header_dev = header_in_.as<int64_t>();
  if (!header_posted_) {
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(ncclGroupStart(), "ncclGroupStart")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclRecv(header_dev, kHeaderWords, ncclInt64, 0, comm, stream), "ncclRecv (header)")));
    DSV2_RETURN_IF_ERROR(Fail(rank_->GroupEnd(absl::Now() + rank_->options().timeout)));
    DSV2_RETURN_IF_ERROR(Fail(rank_->Record(header_done_.get())));
    header_posted_ = true;
  }
  bool idle = false;
  DSV2_RETURN_IF_ERROR(
      Fail(rank_->Poll(header_done_.get(), absl::Now() + rank_->options().idle_timeout, &idle)));
  if (idle) {
    return absl::DeadlineExceededError(
        absl::StrCat("no dispatch from rank 0 within ",
                     absl::FormatDuration(rank_->options().idle_timeout), " (link intact)"));
  }
  header_posted_ = false;
  std::array<int64_t, kHeaderWords> h{};
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::CudaStatus(
      cudaMemcpy(h.data(), header_dev, sizeof(h), cudaMemcpyDeviceToHost), "cudaMemcpy (header)")));
  if (h[comm_nccl::kMagic] != comm_nccl::kHeaderMagic) {
    return Fail(absl::DataLossError("bad header magic from rank 0"));
  }
  const int layer = static_cast<int>(h[comm_nccl::kLayer]);
  if (h[comm_nccl::kType] == comm_nccl::kDrain) {
    broken_ = absl::FailedPreconditionError("the coordinator drained this link");
    return DispatchedTokens{.layer = layer, .drain = true};
  }
  const int64_t n = h[comm_nccl::kCount], hidden = h[comm_nccl::kHidden], k = h[comm_nccl::kTopK];
  if (h[comm_nccl::kType] != comm_nccl::kDispatch || n < 0 || hidden < 1 || k < 0) {
    return Fail(absl::DataLossError(absl::StrCat("bad dispatch header from rank 0: type ",
                                                 h[comm_nccl::kType], ", ", n, " x ", hidden)));
  }
  expert_.resize(n * k);
  weight_.resize(n * k);
  if (n > 0) {
    const absl::Time deadline = absl::Now() + rank_->options().timeout;
    DSV2_RETURN_IF_ERROR(Fail(x_.Reserve(n * hidden * sizeof(float))));
    DSV2_RETURN_IF_ERROR(Fail(expert_dev_.Reserve(n * k * sizeof(int32_t))));
    DSV2_RETURN_IF_ERROR(Fail(weight_dev_.Reserve(n * k * sizeof(float))));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(ncclGroupStart(), "ncclGroupStart")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclRecv(x_.as<float>(), n * hidden, ncclFloat32, 0, comm, stream), "ncclRecv (x)")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclRecv(expert_dev_.as<int32_t>(), n * k, ncclInt32, 0, comm, stream), "ncclRecv (ids)")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclRecv(weight_dev_.as<float>(), n * k, ncclFloat32, 0, comm, stream), "ncclRecv (w)")));
    DSV2_RETURN_IF_ERROR(Fail(rank_->GroupEnd(deadline)));
    DSV2_RETURN_IF_ERROR(Fail(rank_->Record(done_.get())));
    DSV2_RETURN_IF_ERROR(WaitFor(done_, absl::StrCat("dispatch of layer ", layer), deadline));
    DSV2_RETURN_IF_ERROR(
        Fail(comm_nccl::CudaStatus(cudaMemcpy(expert_.data(), expert_dev_.as<int32_t>(),
                                              n * k * sizeof(int32_t), cudaMemcpyDeviceToHost),
                                   "cudaMemcpy (expert ids)")));
    DSV2_RETURN_IF_ERROR(
        Fail(comm_nccl::CudaStatus(cudaMemcpy(weight_.data(), weight_dev_.as<float>(),
                                              n * k * sizeof(float), cudaMemcpyDeviceToHost),
                                   "cudaMemcpy (weights)")));
  }
  awaiting_combine_ = true;
  last_layer_ = layer;
  last_n_ = n;
  last_hidden_ = hidden;
  return DispatchedTokens{.layer = layer,
                          .n = n,
                          .k = k,
                          .hidden = hidden,
                          .x = n > 0 ? x_.as<float>() : nullptr,
                          .expert = expert_.data(),
                          .weight = weight_.data()};
}

absl::Status NcclExpertWorkerLink::SendCombine(int layer, const float* partial, int64_t n,
                                               int64_t hidden) {
  DSV2_RETURN_IF_ERROR(broken_);
  if (!awaiting_combine_ || layer != last_layer_ || n != last_n_ || hidden != last_hidden_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "combine of layer ", layer, " with ", n, " x ", hidden, " values does not answer the ",
        "last dispatch (layer ", last_layer_, ", ", last_n_, " x ", last_hidden_, ")"));
  }
  if (partial == nullptr && n > 0) return absl::InvalidArgumentError("partial is null");
  DSV2_RETURN_IF_ERROR(rank_->Activate());
  const absl::Time deadline = absl::Now() + rank_->options().timeout;
  cudaStream_t stream = rank_->stream();
  ncclComm_t comm = rank_->comm();
  std::array<int64_t, kHeaderWords> h{};
  h[comm_nccl::kMagic] = comm_nccl::kHeaderMagic;
  h[comm_nccl::kType] = comm_nccl::kCombine;
  h[comm_nccl::kLayer] = layer;
  h[comm_nccl::kCount] = n;
  h[comm_nccl::kHidden] = hidden;
  int64_t* header_dev = header_out_.as<int64_t>();
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::CudaStatus(
      cudaMemcpyAsync(header_dev, h.data(), sizeof(h), cudaMemcpyHostToDevice, stream),
      "cudaMemcpyAsync (header)")));
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(ncclGroupStart(), "ncclGroupStart")));
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
      ncclSend(header_dev, kHeaderWords, ncclInt64, 0, comm, stream), "ncclSend (header)")));
  if (n > 0) {
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclSend(partial, n * hidden, ncclFloat32, 0, comm, stream), "ncclSend (partial)")));
  }
  DSV2_RETURN_IF_ERROR(Fail(rank_->GroupEnd(deadline)));
  DSV2_RETURN_IF_ERROR(Fail(rank_->Record(done_.get())));
  DSV2_RETURN_IF_ERROR(WaitFor(done_, absl::StrCat("combine of layer ", layer), deadline));
  awaiting_combine_ = false;
  return absl::OkStatus();
}

}  // namespace dsv2
