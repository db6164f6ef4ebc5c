// RoutedExperts: the routed half of an MoE layer. For each token t and each of its top_k slots
// whose expert e lies in [expert_begin, expert_begin + n_local):
//   out[t] = Σ_slots weight[t, slot] · down_e(silu(gate_e(x[t])) · up_e(x[t]))
// summed in float32 in ascending expert id (a fixed order: results never depend on scheduling),
// then added to out (accumulate) or written to it (0 for a token with no local expert) and
// rounded to the activation dtype.
// Slots with id < 0 or outside the range are skipped (expert parallelism hosts a range).
//
// CPU: tokens grouped per expert, each expert's weights read once per call.
// CUDA: tokens sorted by expert on the device (counting sort, no host round trip), grouped
// GEMMs over the sorted rows, SiLU·mul fused, then one combine pass per token. The CUDA twin
// needs each matrix kind of the local experts evenly spaced in memory (experts[e].gate.data =
// experts[0].gate.data + e·stride, likewise up and down), which the weight upload guarantees.
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/mlp_weights.h"

namespace dsv2 {

struct RoutedExpertsArgs {
  const MlpWeights* experts = nullptr;  // [n_local], a host array of views
  int64_t n_local = 0;
  int64_t expert_begin = 0;
  const int32_t* expert = nullptr;  // [n_tokens, top_k] on the context's device
  const float* weight = nullptr;    // [n_tokens, top_k]
  int64_t n_tokens = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  const void* x = nullptr;  // [n_tokens, hidden] activation dtype
  void* out = nullptr;      // [n_tokens, hidden] activation dtype
  bool accumulate = false;  // out += the sum (else out = the sum)
};

namespace cpu {
void RoutedExperts(const CpuContext& ctx, const RoutedExpertsArgs& args);
}
namespace cuda {
void RoutedExperts(CudaContext& ctx, const RoutedExpertsArgs& args);
}

inline void RoutedExperts(const ExecContext& ctx, const RoutedExpertsArgs& args) {
  if (ctx.on_cuda()) return cuda::RoutedExperts(ctx.cuda(), args);
  cpu::RoutedExperts(ctx.cpu(), args);
}

}  // namespace dsv2
