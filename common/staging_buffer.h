// StagingBuffer: a pair of growable buffers — page-locked host memory and CUDA device memory of
// the same size — for data that crosses between a host transport (TCP) and a GPU: stage on the
// host, copy on the stream (asynchronous from pinned memory), and back. They grow to the
// largest request and are reused, so a steady state allocates nothing. Contents are not kept
// across growth.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/device_buffer.h"

namespace dsv2 {

class StagingBuffer {
 public:
  StagingBuffer() = default;
  ~StagingBuffer() {
    if (host_ != nullptr) cuda::FreeHost(host_);
  }
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;

  // Makes both halves hold at least `bytes`.
  absl::Status Reserve(int64_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    if (host_ != nullptr) cuda::FreeHost(host_);
    host_ = nullptr;
    capacity_ = 0;
    DSV2_ASSIGN_OR_RETURN(host_, cuda::MallocHost(bytes));
    DSV2_ASSIGN_OR_RETURN(device_, DeviceBuffer::Allocate(Device::kCuda, bytes));
    capacity_ = bytes;
    return absl::OkStatus();
  }
  template <typename T>
  T* host() const {
    return static_cast<T*>(host_);
  }
  template <typename T>
  T* device() const {
    return device_.as<T>();
  }
  int64_t capacity() const { return capacity_; }

 private:
  void* host_ = nullptr;
  DeviceBuffer device_;
  int64_t capacity_ = 0;
};

}  // namespace dsv2
