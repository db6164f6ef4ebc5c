#include "common/comm/nccl/nccl_dispatcher.h"

#include <cublas_v2.h>

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dsv2 {

using comm_nccl::kHeaderWords;

namespace {

absl::Status CublasStatus(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(call, ": cuBLAS status ", static_cast<int>(status)));
}

// Calls fn(i, j) for each run [i, j) of consecutive token indices in `tokens`.
template <typename Fn>
void ForEachRun(const std::vector<int64_t>& tokens, Fn fn) {
  const size_t m = tokens.size();
  for (size_t i = 0; i < m;) {
    size_t j = i + 1;
    while (j < m && tokens[j] == tokens[j - 1] + 1) ++j;
    fn(i, j);
    i = j;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclExpertDispatcher>> NcclExpertDispatcher::Create(
    const std::string& unique_id, int world_size, const NcclOptions& options) {
  std::unique_ptr<NcclExpertDispatcher> d(new NcclExpertDispatcher());
  DSV2_ASSIGN_OR_RETURN(d->rank_, comm_nccl::NcclRank::Create(unique_id, 0, world_size, options));
  DSV2_RETURN_IF_ERROR(d->done_.Init());
  cublasHandle_t handle = nullptr;
  DSV2_RETURN_IF_ERROR(CublasStatus(cublasCreate(&handle), "cublasCreate"));
  d->cublas_ = handle;
  DSV2_RETURN_IF_ERROR(
      CublasStatus(cublasSetStream(handle, d->rank_->stream()), "cublasSetStream"));
  DSV2_RETURN_IF_ERROR(
      CublasStatus(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode"));
  d->buffers_.resize(world_size);
  d->host_headers_.assign(static_cast<size_t>(world_size) * kHeaderWords, 0);
  const size_t header_bytes = d->host_headers_.size() * sizeof(int64_t);
  DSV2_RETURN_IF_ERROR(d->headers_out_.Reserve(header_bytes));
  DSV2_RETURN_IF_ERROR(d->headers_in_.Reserve(header_bytes));
  return d;
}

NcclExpertDispatcher::~NcclExpertDispatcher() {
  if (rank_ != nullptr && !rank_->aborted()) cudaStreamSynchronize(rank_->stream());
  if (cublas_ != nullptr) cublasDestroy(cublas_);
}

int NcclExpertDispatcher::world_size() const { return rank_->world_size(); }
cudaStream_t NcclExpertDispatcher::stream() const { return rank_->stream(); }

absl::Status NcclExpertDispatcher::CheckCall(const DispatchLayout& layout, const void* data,
                                             int64_t hidden) const {
  DSV2_RETURN_IF_ERROR(broken_);
  DSV2_RETURN_IF_ERROR(rank_->Activate());
  if (layout.world_size() != world_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dispatch layout for world size ", layout.world_size(), ", dispatcher has ", world_size()));
  }
  if (hidden < 1 || hidden > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("hidden must be in [1, 2^31), got ", hidden));
  }
  if (data == nullptr && layout.n_tokens() > 0) {
    return absl::InvalidArgumentError("activation pointer is null");
  }
  return absl::OkStatus();
}

absl::Status NcclExpertDispatcher::Fail(absl::Status status) {
  if (!status.ok() && broken_.ok()) {
    rank_->Abort();
    broken_ = status;
  }
  return status;
}

absl::Status NcclExpertDispatcher::Wait(const std::string& what, absl::Time deadline) {
  bool timed_out = false;
  absl::Status s = rank_->Record(done_.get());
  if (s.ok()) s = rank_->Poll(done_.get(), deadline, &timed_out);
  if (s.ok() && timed_out) {
    s = absl::UnavailableError(
        absl::StrCat(what, " with expert-parallel ranks 1..", world_size() - 1,
                     " did not complete within ", absl::FormatDuration(rank_->options().timeout),
                     " (a worker is silent or gone; NCCL does not tell which)"));
  }
  return Fail(s);
}

absl::Status NcclExpertDispatcher::SendHeaders(int64_t type, int layer,
                                               const DispatchLayout* layout, int64_t hidden,
                                               absl::Time deadline) {
  const int world = world_size();
  for (int r = 1; r < world; ++r) {
    int64_t* h = host_headers_.data() + static_cast<size_t>(r) * kHeaderWords;
    std::fill(h, h + kHeaderWords, 0);
    h[comm_nccl::kMagic] = comm_nccl::kHeaderMagic;
    h[comm_nccl::kType] = type;
    h[comm_nccl::kLayer] = layer;
    h[comm_nccl::kCount] = layout ? layout->tokens_per_rank()[r] : 0;
    h[comm_nccl::kHidden] = hidden;
    h[comm_nccl::kTopK] = layout ? layout->top_k() : 0;
  }
  int64_t* dev = headers_out_.as<int64_t>();
  // Pageable source: the call returns once the bytes are staged, so host_headers_ is reusable.
  DSV2_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev, host_headers_.data(),
                                            host_headers_.size() * sizeof(int64_t),
                                            cudaMemcpyHostToDevice, rank_->stream()));
  DSV2_NCCL_RETURN_IF_ERROR(ncclGroupStart());
  for (int r = 1; r < world; ++r) {
    DSV2_NCCL_RETURN_IF_ERROR(ncclSend(dev + static_cast<size_t>(r) * kHeaderWords, kHeaderWords,
                                       ncclInt64, r, rank_->comm(), rank_->stream()));
  }
  return rank_->GroupEnd(deadline);
}

absl::Status NcclExpertDispatcher::Dispatch(int layer, const DispatchLayout& layout, const float* x,
                                            int64_t hidden) {
  DSV2_RETURN_IF_ERROR(CheckCall(layout, x, hidden));
  const absl::Time deadline = absl::Now() + rank_->options().timeout;
  const int64_t k = layout.top_k();
  cudaStream_t stream = rank_->stream();
  // Counts first: one header per worker, so each can size its receive buffers.
  DSV2_RETURN_IF_ERROR(Fail(SendHeaders(comm_nccl::kDispatch, layer, &layout, hidden, deadline)));
  CommCounters sent{.bytes_sent = (world_size() - 1) * kHeaderWords * 8,
                    .messages_sent = world_size() - 1};
  // Stage each rank's rows (device gather, one copy per run) and slots (host → device).
  for (int r = 1; r < world_size(); ++r) {
    const std::vector<int64_t>& tokens = layout.tokens(r);
    const int64_t m = static_cast<int64_t>(tokens.size());
    if (m == 0) continue;
    PerRank& b = buffers_[r];
    DSV2_RETURN_IF_ERROR(Fail(b.x.Reserve(m * hidden * sizeof(float))));
    DSV2_RETURN_IF_ERROR(Fail(b.expert.Reserve(m * k * sizeof(int32_t))));
    DSV2_RETURN_IF_ERROR(Fail(b.weight.Reserve(m * k * sizeof(float))));
    absl::Status s;
    ForEachRun(tokens, [&](size_t i, size_t j) {
      if (!s.ok()) return;
      s = comm_nccl::CudaStatus(
          cudaMemcpyAsync(b.x.as<float>() + i * hidden, x + tokens[i] * hidden,
                          (j - i) * hidden * sizeof(float), cudaMemcpyDeviceToDevice, stream),
          "cudaMemcpyAsync (gather)");
    });
    DSV2_RETURN_IF_ERROR(Fail(s));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::CudaStatus(
        cudaMemcpyAsync(b.expert.as<int32_t>(), layout.expert(r).data(), m * k * sizeof(int32_t),
                        cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync (expert ids)")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::CudaStatus(
        cudaMemcpyAsync(b.weight.as<float>(), layout.weight(r).data(), m * k * sizeof(float),
                        cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync (weights)")));
  }
  // Then the payloads, all ranks in one group so that no rank waits behind another.
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(ncclGroupStart(), "ncclGroupStart")));
  for (int r = 1; r < world_size(); ++r) {
    const int64_t m = layout.tokens_per_rank()[r];
    if (m == 0) continue;
    const PerRank& b = buffers_[r];
    ncclComm_t comm = rank_->comm();
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclSend(b.x.as<float>(), m * hidden, ncclFloat32, r, comm, stream), "ncclSend (x)")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclSend(b.expert.as<int32_t>(), m * k, ncclInt32, r, comm, stream), "ncclSend (ids)")));
    DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
        ncclSend(b.weight.as<float>(), m * k, ncclFloat32, r, comm, stream), "ncclSend (w)")));
    sent.bytes_sent += m * (hidden * 4 + k * 8);
    sent.messages_sent += 1;
  }
  DSV2_RETURN_IF_ERROR(Fail(rank_->GroupEnd(deadline)));
  DSV2_RETURN_IF_ERROR(Wait(absl::StrCat("dispatch of layer ", layer), deadline));
  Count(layer, sent);
  return absl::OkStatus();
}

absl::Status NcclExpertDispatcher::Combine(int layer, const DispatchLayout& layout, float* out,
                                           int64_t hidden) {
  DSV2_RETURN_IF_ERROR(CheckCall(layout, out, hidden));
  const absl::Time deadline = absl::Now() + rank_->options().timeout;
  const int world = world_size();
  cudaStream_t stream = rank_->stream();
  ncclComm_t comm = rank_->comm();
  // Header and payload in one group per worker: the sizes are known from the layout.
  for (int r = 1; r < world; ++r) {
    const int64_t m = layout.tokens_per_rank()[r];
    DSV2_RETURN_IF_ERROR(Fail(buffers_[r].partial.Reserve(m * hidden * sizeof(float))));
  }
  int64_t* headers = headers_in_.as<int64_t>();
  CommCounters received;
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(ncclGroupStart(), "ncclGroupStart")));
  for (int r = 1; r < world; ++r) {
    const int64_t m = layout.tokens_per_rank()[r];
    DSV2_RETURN_IF_ERROR(
        Fail(comm_nccl::NcclStatus(ncclRecv(headers + static_cast<size_t>(r) * kHeaderWords,
                                            kHeaderWords, ncclInt64, r, comm, stream),
                                   "ncclRecv (header)")));
    if (m > 0) {
      DSV2_RETURN_IF_ERROR(Fail(comm_nccl::NcclStatus(
          ncclRecv(buffers_[r].partial.as<float>(), m * hidden, ncclFloat32, r, comm, stream),
          "ncclRecv (partial)")));
    }
    received.bytes_received += kHeaderWords * 8 + m * hidden * 4;
    received.messages_received += 1;
  }
  DSV2_RETURN_IF_ERROR(Fail(rank_->GroupEnd(deadline)));
  DSV2_RETURN_IF_ERROR(Wait(absl::StrCat("combine of layer ", layer), deadline));
  DSV2_RETURN_IF_ERROR(Fail(comm_nccl::CudaStatus(
      cudaMemcpy(host_headers_.data(), headers, host_headers_.size() * sizeof(int64_t),
                 cudaMemcpyDeviceToHost),
      "cudaMemcpy (combine headers)")));
  for (int r = 1; r < world; ++r) {
    const int64_t* h = host_headers_.data() + static_cast<size_t>(r) * kHeaderWords;
    const int64_t m = layout.tokens_per_rank()[r];
    if (h[comm_nccl::kMagic] != comm_nccl::kHeaderMagic ||
        h[comm_nccl::kType] != comm_nccl::kCombine || h[comm_nccl::kLayer] != layer ||
        h[comm_nccl::kCount] != m || h[comm_nccl::kHidden] != hidden) {
      return Fail(absl::DataLossError(absl::StrCat(
          "expert-parallel rank ", r, ": expected a combine of layer ", layer, " with ", m, " x ",
          hidden, " values, got type ", h[comm_nccl::kType], " layer ", h[comm_nccl::kLayer],
          " with ", h[comm_nccl::kCount], " x ", h[comm_nccl::kHidden])));
    }
  }
  // Fixed order: rank 1's partial sums, then rank 2's, ... (stream order makes it so).
  const float one = 1.0f;
  for (int r = 1; r < world; ++r) {
    const std::vector<int64_t>& tokens = layout.tokens(r);
    const float* partial = buffers_[r].partial.as<float>();
    absl::Status s;
    ForEachRun(tokens, [&](size_t i, size_t j) {
      if (!s.ok()) return;
      s = CublasStatus(cublasSaxpy_64(cublas_, static_cast<int64_t>(j - i) * hidden, &one,
                                      partial + i * hidden, 1, out + tokens[i] * hidden, 1),
                       "cublasSaxpy_64");
    });
    DSV2_RETURN_IF_ERROR(Fail(s));
  }
  // `out` is complete on return, whatever stream the caller reads it on next.
  DSV2_RETURN_IF_ERROR(Wait(absl::StrCat("adding the partial sums of layer ", layer), deadline));
  Count(layer, received);
  return absl::OkStatus();
}

absl::Status NcclExpertDispatcher::Drain() {
  DSV2_RETURN_IF_ERROR(broken_);
  DSV2_RETURN_IF_ERROR(rank_->Activate());
  const absl::Time deadline = absl::Now() + rank_->options().timeout;
  DSV2_RETURN_IF_ERROR(Fail(SendHeaders(comm_nccl::kDrain, -1, nullptr, 0, deadline)));
  DSV2_RETURN_IF_ERROR(Wait("drain", deadline));
  Count(-1,
        {.bytes_sent = (world_size() - 1) * kHeaderWords * 8, .messages_sent = world_size() - 1});
  broken_ = absl::FailedPreconditionError("the expert dispatcher has been drained");
  return absl::OkStatus();
}

void NcclExpertDispatcher::Count(int layer, const CommCounters& delta) {
  std::lock_guard<std::mutex> lock(stats_mu_);
  AddCommCounters(stats_, layer, delta);
}

CommStats NcclExpertDispatcher::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

}  // namespace dsv2
