// UploadModelWeights: the bound (mmap'ed) weights copied once to a CUDA device, converted to the
// run's dtype (bfloat16, or float32 widened once for the verification mode); norm vectors stay
// float32. The result has the same structure as the host weights, over device memory. The
// routed experts of each layer are laid out contiguously per matrix kind ([E, width, hidden]
// gate and up, [E, hidden, width] down), as the grouped expert GEMM needs. Host data goes
// through two pinned staging buffers, so conversion overlaps the copy; a progress line with
// GB/s is printed about every 2 GB and at the end.
#pragma once

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "coordinator/model/model_weights.h"
#include "kernels/cuda/cuda_context.h"

namespace dsv2 {

absl::StatusOr<ModelWeights> UploadModelWeights(const ModelConfig& config, const ModelWeights& host,
                                                CudaContext& cuda);

}  // namespace dsv2
