#include "kernels/device_buffer.h"

#include <cstdlib>
#include <new>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_context.h"

namespace dsv2 {

const char* DeviceName(Device d) { return d == Device::kCuda ? "cuda" : "cpu"; }

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(Device device, int64_t bytes) {
  DeviceBuffer b;
  b.device_ = device;
  if (bytes <= 0) return b;
  if (device == Device::kCuda) {
    absl::StatusOr<void*> p = cuda::Malloc(bytes);
    if (!p.ok()) return p.status();
    b.data_ = *p;
  } else {
    const size_t rounded = (static_cast<size_t>(bytes) + 255) / 256 * 256;
    b.data_ = std::aligned_alloc(256, rounded);
    if (b.data_ == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("out of host memory allocating ", bytes, " bytes"));
    }
  }
  b.bytes_ = bytes;
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ == nullptr) return;
  if (device_ == Device::kCuda) {
    cuda::Free(data_);
  } else {
    std::free(data_);
  }
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    DeviceBuffer dead(std::move(*this));
    device_ = o.device_;
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

}  // namespace dsv2
