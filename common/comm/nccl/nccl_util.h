// Pieces shared by the NCCL coordinator and worker: status conversion, device buffers, and one
// rank's CUDA stream + nonblocking NCCL communicator with deadline-bounded waits.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace dsv2 {

// The number of CUDA devices. Any runtime error (without a driver: error 35, "insufficient
// driver") means "no device" and comes back as FAILED_PRECONDITION with the reason.
absl::StatusOr<int> CudaDeviceCount();

// A fresh NCCL unique id (NCCL_UNIQUE_ID_BYTES bytes) for the control plane to hand to every rank.
absl::StatusOr<std::string> NewNcclUniqueId();

struct NcclOptions {
  int device = 0;
  cudaStream_t stream = nullptr;  // all communicator work goes here; nullptr: an own stream
  absl::Duration init_timeout = absl::Seconds(60);  // communicator creation (all ranks meet)
  absl::Duration timeout = absl::Seconds(10);       // one exchange, as in the TCP transport
  absl::Duration idle_timeout = absl::Seconds(10);  // worker: until the next header arrives
};

namespace comm_nccl {

absl::Status CudaStatus(cudaError_t error, const char* call);
absl::Status NcclStatus(ncclResult_t result, const char* call);

#define DSV2_CUDA_RETURN_IF_ERROR(call) \
  DSV2_RETURN_IF_ERROR(::dsv2::comm_nccl::CudaStatus((call), #call))
#define DSV2_NCCL_RETURN_IF_ERROR(call) \
  DSV2_RETURN_IF_ERROR(::dsv2::comm_nccl::NcclStatus((call), #call))

// The message header on the wire: int64 [kHeaderWords] in device memory.
inline constexpr int kHeaderWords = 8;
inline constexpr int64_t kHeaderMagic = 0x4453563243434c4e;  // "DSV2NCCL"
enum HeaderField { kMagic = 0, kType = 1, kLayer = 2, kCount = 3, kHidden = 4, kTopK = 5 };
enum MessageType : int64_t { kDispatch = 1, kCombine = 2, kDrain = 3 };

// A grow-only device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), capacity_(std::exchange(other.capacity_, 0)) {}
  ~DeviceBuffer();
  absl::Status Reserve(size_t bytes);
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// One rank of a nonblocking NCCL communicator on its device and stream.
class NcclRank {
 public:
  static absl::StatusOr<std::unique_ptr<NcclRank>> Create(const std::string& unique_id, int rank,
                                                          int world_size,
                                                          const NcclOptions& options);
  ~NcclRank();  // finalizes, or aborts when broken

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  ncclComm_t comm() const { return comm_; }
  cudaStream_t stream() const { return stream_; }
  const NcclOptions& options() const { return options_; }
  // Makes the rank's device current on the calling thread (CUDA's current device is per thread).
  absl::Status Activate() const;

  // Ends a group; a nonblocking communicator may still be enqueuing, so polls until it is done.
  absl::Status GroupEnd(absl::Time deadline);
  // Records `event` on the stream after everything enqueued so far.
  absl::Status Record(cudaEvent_t event);
  // Polls `event` and the communicator's async error until the event completes. When the
  // deadline passes first, sets *timed_out and returns OK, leaving the work in flight.
  absl::Status Poll(cudaEvent_t event, absl::Time deadline, bool* timed_out);
  // Aborts the communicator: in-flight operations end, the rank is unusable afterwards.
  void Abort();
  bool aborted() const { return aborted_; }

 private:
  NcclRank() = default;
  NcclOptions options_;
  int rank_ = 0;
  int world_size_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  bool aborted_ = false;
};

// A CUDA event (timing disabled) owned by the object.
class Event {
 public:
  Event() = default;
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  absl::Status Init();
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace comm_nccl
}  // namespace dsv2
