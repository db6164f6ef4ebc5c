// CudaExpertShard: a worker's routed experts on its GPU (dsv2-worker --device cuda). Upload
// copies the bound shard — only this worker's experts' bytes are read from the checkpoint — in
// the run's dtype, each matrix kind of a layer's experts in one allocation (the grouped expert
// GEMM's layout), with progress lines. Forward runs one layer's received tokens through the
// same grouped GEMMs as the GPU engine (kernels/routed_experts.h).
//
// Both data planes carry float32 rows; the shard computes in the activation dtype:
//   x float32 → CastRows → activation dtype;  ids, weights (host) → device
//   RoutedExperts → CastRows → partial float32
// On TCP the rows come from and go back to host memory through one pinned buffer; on NCCL they
// stay on the device. Either way one synchronisation per layer: the result is complete when
// Forward returns.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/comm/communicator.h"
#include "common/expert_shard.h"
#include "common/staging_buffer.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/device_buffer.h"
#include "kernels/mlp_weights.h"

namespace dsv2 {

class CudaExpertShard {
 public:
  static absl::StatusOr<std::unique_ptr<CudaExpertShard>> Upload(const ExpertShard& host,
                                                                 CudaContext& cuda);

  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // partial [tokens.n, tokens.hidden] float32 host memory, written: for each received token,
  // Σ over its slots on this shard of weight · expert(x). tokens.x, .expert, .weight are host
  // memory (the TCP link's buffers). INVALID_ARGUMENT for a layer without experts here.
  absl::Status Forward(const DispatchedTokens& tokens, float* partial);
  // The same for rows on the device (the NCCL link's buffers; ids and weights on the host).
  // Returns the partial sums, float32 [tokens.n, tokens.hidden] on the device, valid until the
  // next call; null when tokens.n is 0.
  absl::StatusOr<const float*> ForwardOnDevice(const DispatchedTokens& tokens);

 private:
  explicit CudaExpertShard(CudaContext& cuda) : cuda_(cuda) {}
  absl::Status CheckLayer(const DispatchedTokens& tokens) const;
  // Stages ids and weights (host) on the device and runs the layer's experts on x (device,
  // activation dtype) into out (device, activation dtype).
  absl::Status RunExperts(const DispatchedTokens& tokens, const void* x, void* out);
  // Enqueues the layer on rows x (device, float32 [n, hidden]); returns partial_ (not yet
  // complete: the caller synchronises). The context's device must be current.
  absl::StatusOr<const float*> Enqueue(const DispatchedTokens& tokens, const float* x);

  CudaContext& cuda_;
  int64_t begin_ = 0, end_ = 0;
  std::vector<std::vector<MlpWeights>> layers_;  // [layer][e - begin], device views
  std::vector<DeviceBuffer> storage_;            // owns the device weights
  StagingBuffer rows_;    // [n, hidden] float32: TCP rows in, partial sums out (pinned)
  StagingBuffer expert_;  // [n, k] int32
  StagingBuffer weight_;  // [n, k] float32
  DeviceBuffer x_;        // [n, hidden] activation dtype (bfloat16 runs)
  DeviceBuffer out_;      // [n, hidden] activation dtype (bfloat16 runs)
  DeviceBuffer partial_;  // [n, hidden] float32 partial sums
};

}  // namespace dsv2
