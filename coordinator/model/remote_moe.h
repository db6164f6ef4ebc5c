// The routed half of an MoE layer on a RoutedExpertBackend (expert parallelism), from a model
// on the CPU or on a GPU. The backend speaks float32 host rows (the TCP data plane); a GPU
// model stages through pinned buffers:
//
//   GPU: router top-k ──► host: ids, weights, x (widened to float32)
//   host: backend->Run(x) ─── tokens away ───────────────────────► partial sums (float32)
//   GPU, while away: own shard (if any) + shared experts → own [n, hidden]
//   host: out = partial sums + own, rounded to the activation dtype ──► GPU
//
// The shared experts (and the coordinator's own shard) are enqueued on the stream while the
// tokens are with the workers, so the GPU works during the exchange.
//
// With a backend whose rows live on the device (NCCL) the rows never leave the GPU: x is widened
// to float32 there (CastRows), the backend adds the partial sums into a zeroed float32 buffer,
// and one CastRows adds the coordinator's own terms and rounds. Only the router's choice (ids,
// weights) comes to the host, for the dispatch layout.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "common/model_config.h"
#include "common/staging_buffer.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/routed_expert_backend.h"
#include "kernels/cpu_context.h"
#include "kernels/exec_context.h"

namespace dsv2 {

// What a GPU model keeps between layers for RemoteMoe: sized once by the largest step.
struct RemoteMoeStaging {
  StagingBuffer x;                // [n, hidden] activation dtype (in), then the result (out)
  StagingBuffer expert;           // [n, k] int32 (host half used)
  StagingBuffer weight;           // [n, k] float32 (host half used)
  StagingBuffer own;              // [n, hidden] activation dtype: own shard + shared experts
  std::vector<float> x32, out32;  // [n, hidden] float32 host rows for the backend
  DeviceBuffer x32_device;        // [n, hidden] float32: the rows for a device backend
  DeviceBuffer out32_device;      // [n, hidden] float32: its partial sums
  CpuContext cpu{1};              // the backend's host context (no expert math runs on it)
};

struct RemoteMoeArgs {
  int64_t layer = 0;
  const void* x = nullptr;  // [n, hidden] normalized input, on ctx's device
  int64_t n = 0;
  const int32_t* expert = nullptr;      // [n, top_k] router choice, on ctx's device
  const float* weight = nullptr;        // [n, top_k]
  void* out = nullptr;                  // [n, hidden]: routed + shared experts, written
  RemoteMoeStaging* staging = nullptr;  // required on a GPU
  // The caller's independent work (another micro-batch's attention), run while the tokens are
  // away, after the layer's own terms are started; may be null.
  const std::function<void()>* while_away = nullptr;
};

absl::Status RemoteMoe(const ExecContext& ctx, const ModelConfig& config, const MoeWeights& w,
                       const RemoteMoeArgs& args, RoutedExpertBackend& backend);

}  // namespace dsv2
