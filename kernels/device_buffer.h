// DeviceBuffer: bytes that own their memory and know where it lives (host RAM or CUDA device
// memory), plus the copies between them. Allocation failures are statuses (an out-of-memory
// GPU is input, not a bug); copies on CUDA are ordered on the given context's stream.
#pragma once

#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"

namespace dsv2 {

enum class Device : uint8_t { kCpu, kCuda };
const char* DeviceName(Device d);

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(Device device, int64_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : device_(o.device_),
        data_(std::exchange(o.data_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  int64_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Device device_ = Device::kCpu;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace dsv2
