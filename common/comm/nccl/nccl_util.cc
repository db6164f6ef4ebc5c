#include "common/comm/nccl/nccl_util.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/comm/communicator.h"

namespace dsv2 {

static_assert(kNcclUniqueIdBytes == NCCL_UNIQUE_ID_BYTES,
              "communicator.h's kNcclUniqueIdBytes must be NCCL's unique-id size");

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls report their own
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device: cudaGetDeviceCount returned error ", static_cast<int>(error),
                     " (", cudaGetErrorString(error), ")"));
  }
  return count;
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  DSV2_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

namespace comm_nccl {

absl::Status CudaStatus(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();
  const std::string message =
      absl::StrCat(call, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status NcclStatus(ncclResult_t result, const char* call) {
  if (result == ncclSuccess || result == ncclInProgress) return absl::OkStatus();
  const std::string message =
      absl::StrCat(call, ": ", ncclGetErrorString(result), " (", ncclGetLastError(nullptr), ")");
  switch (result) {
    case ncclRemoteError:
    case ncclSystemError:
      return absl::UnavailableError(message);
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

absl::Status DeviceBuffer::Reserve(size_t bytes) {
  if (bytes <= capacity_) return absl::OkStatus();
  if (ptr_ != nullptr) cudaFree(ptr_);
  ptr_ = nullptr;
  capacity_ = 0;
  DSV2_CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, bytes));
  capacity_ = bytes;
  return absl::OkStatus();
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

absl::Status Event::Init() {
  return CudaStatus(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming),
                    "cudaEventCreateWithFlags");
}

namespace {

// Polls a nonblocking communicator until it leaves ncclInProgress. *timed_out on deadline.
absl::Status AwaitCommReady(ncclComm_t comm, absl::Time deadline, bool* timed_out) {
  while (true) {
    ncclResult_t state = ncclSuccess;
    DSV2_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm, &state));
    if (state != ncclInProgress) return NcclStatus(state, "NCCL communicator");
    if (absl::Now() >= deadline) {
      *timed_out = true;
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclRank>> NcclRank::Create(const std::string& unique_id, int rank,
                                                           int world_size,
                                                           const NcclOptions& options) {
  if (unique_id.size() != sizeof(ncclUniqueId::internal)) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL unique id has ", unique_id.size(),
                                                   " bytes, expected ",
                                                   sizeof(ncclUniqueId::internal)));
  }
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside world size ", world_size));
  }
  std::unique_ptr<NcclRank> r(new NcclRank());
  r->options_ = options;
  r->rank_ = rank;
  r->world_size_ = world_size;
  DSV2_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  r->stream_ = options.stream;
  if (r->stream_ == nullptr) {
    DSV2_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&r->stream_, cudaStreamNonBlocking));
    r->own_stream_ = true;
  }
  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so that a silent peer can be given up on (ncclCommAbort)
  DSV2_NCCL_RETURN_IF_ERROR(ncclCommInitRankConfig(&r->comm_, world_size, id, rank, &config));
  bool timed_out = false;
  const absl::Status ready =
      AwaitCommReady(r->comm_, absl::Now() + options.init_timeout, &timed_out);
  if (!ready.ok() || timed_out) {
    r->Abort();
    return ready.ok() ? absl::UnavailableError(absl::StrCat(
                            "NCCL communicator of ", world_size, " ranks not formed within ",
                            absl::FormatDuration(options.init_timeout), " (a rank is missing)"))
                      : ready;
  }
  return r;
}

NcclRank::~NcclRank() {
  if (comm_ != nullptr && !aborted_) {
    bool timed_out = false;
    const ncclResult_t finalize = ncclCommFinalize(comm_);
    const bool finalized = (finalize == ncclSuccess || finalize == ncclInProgress) &&
                           AwaitCommReady(comm_, absl::Now() + absl::Seconds(5), &timed_out).ok() &&
                           !timed_out;
    if (finalized) {
      ncclCommDestroy(comm_);
    } else {
      Abort();
    }
  }
  if (own_stream_ && stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status NcclRank::Activate() const {
  return CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice");
}

absl::Status NcclRank::GroupEnd(absl::Time deadline) {
  DSV2_NCCL_RETURN_IF_ERROR(ncclGroupEnd());
  bool timed_out = false;
  DSV2_RETURN_IF_ERROR(AwaitCommReady(comm_, deadline, &timed_out));
  if (timed_out) return absl::UnavailableError("NCCL did not finish enqueuing a group in time");
  return absl::OkStatus();
}

absl::Status NcclRank::Record(cudaEvent_t event) {
  return CudaStatus(cudaEventRecord(event, stream_), "cudaEventRecord");
}

absl::Status NcclRank::Poll(cudaEvent_t event, absl::Time deadline, bool* timed_out) {
  *timed_out = false;
  while (true) {
    const cudaError_t query = cudaEventQuery(event);
    if (query == cudaSuccess) return absl::OkStatus();
    if (query != cudaErrorNotReady) return CudaStatus(query, "cudaEventQuery");
    ncclResult_t state = ncclSuccess;
    DSV2_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm_, &state));
    if (state != ncclSuccess && state != ncclInProgress) {
      return NcclStatus(state, "NCCL communication");
    }
    if (absl::Now() >= deadline) {
      *timed_out = true;
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

void NcclRank::Abort() {
  if (comm_ != nullptr && !aborted_) ncclCommAbort(comm_);
  aborted_ = true;
}

}  // namespace comm_nccl
}  // namespace dsv2
