// WeightUploader: bound (mmap'ed) checkpoint matrices copied to a CUDA device in the run's dtype
// (bfloat16, or float32 widened once for verification). Host data goes through two pinned
// staging buffers, so conversion overlaps the copy; a progress line with GB/s is printed about
// every 2 GB and at the end. Used by the coordinator's model upload and by a worker's expert
// shard (the same layout: each matrix kind of a layer's routed experts in one allocation).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/device_buffer.h"
#include "kernels/mlp_weights.h"
#include "kernels/weight_view.h"

namespace dsv2 {

class WeightUploader {
 public:
  // `what` names the upload in progress lines ("weights", "expert shard"); device allocations
  // are appended to `storage`, which owns them. `total_bytes`: host bytes to be read, for the
  // percentage.
  WeightUploader(CudaContext& cuda, std::string what, int64_t total_bytes,
                 std::vector<DeviceBuffer>* storage);
  ~WeightUploader();
  WeightUploader(const WeightUploader&) = delete;
  WeightUploader& operator=(const WeightUploader&) = delete;

  absl::Status Init();  // the pinned staging buffers
  absl::StatusOr<uint8_t*> Allocate(int64_t bytes);
  // Copies `src` (rows row_stride apart) densely to dst as `to`; returns the device view.
  absl::StatusOr<WeightView> Matrix(const WeightView& src, DType to, uint8_t* dst);
  // The same into a new allocation; an empty view stays empty.
  absl::StatusOr<WeightView> NewMatrix(const WeightView& src, DType to);
  // A float32 vector (norm scales); null stays null.
  absl::StatusOr<const float*> Vector(const float* src, int64_t n);
  // One matrix kind of every routed expert of a layer in one allocation, [E, rows, cols] (the
  // grouped expert GEMM's layout): dst[e].*kind = the device view of src[e].*kind.
  absl::Status Experts(DType to, const std::vector<MlpWeights>& src, std::vector<MlpWeights>& dst,
                       WeightView MlpWeights::*kind);
  absl::Status Finish();  // waits for the last copy and prints the final line

 private:
  void Progress(int64_t bytes);
  void Report(bool last);

  CudaContext& cuda_;
  std::string what_;
  std::vector<DeviceBuffer>* storage_;
  void* staging_[2] = {nullptr, nullptr};
  int next_ = 0;
  int64_t total_ = 0, done_ = 0, reported_ = 0;
  std::chrono::steady_clock::time_point start_;
};

// Host bytes of a matrix view (0 for an empty one), and of a gated MLP's three.
inline int64_t HostBytes(const WeightView& w) { return w.data ? w.bytes() : 0; }
inline int64_t HostBytes(const MlpWeights& m) {
  return HostBytes(m.gate) + HostBytes(m.up) + HostBytes(m.down);
}

}  // namespace dsv2
