// The routed half of an MoE layer on a RoutedExpertBackend (expert parallelism), from a model
// on the CPU or on a GPU. On a GPU:
//
//   GPU: router top-k; x widened to float32 rows (CastRows) ──► ids, weights to the host
//   backend->Run(rows) ─── tokens away ──────────────────────► partial sums (float32)
//   GPU, while away: own shard (if any) + shared experts → own [n, hidden]
//   GPU: out = partial sums + own, rounded once to the activation dtype (CastRows)
//
// The rows and partial sums are host memory for a TCP backend (through pinned buffers: one
// copy each way) and stay on the device for an NCCL one (device_activations()). The shared
// experts (and the coordinator's own shard) are enqueued on the stream while the tokens are
// with the workers, so the GPU works during the exchange.
#pragma once

#include <functional>
#include <memory>

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
  StagingBuffer x32;     // [n, hidden] float32 rows for the backend (pinned host + device)
  StagingBuffer out32;   // [n, hidden] float32 partial sums from it
  StagingBuffer expert;  // [n, k] int32 router choice (host half read)
  StagingBuffer weight;  // [n, k] float32
  DeviceBuffer own;      // [n, hidden] activation dtype: own shard + shared experts
  CpuContext cpu{1};     // the backend's host context (no expert math runs on it)
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
