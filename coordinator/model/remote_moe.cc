#include "coordinator/model/remote_moe.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/gated_mlp.h"
#include "common/status_macros.h"
#include "kernels/cast_rows.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/dtype.h"
#include "kernels/routed_experts.h"

namespace dsv2 {
namespace {

void RunCallersWork(const RemoteMoeArgs& a) {
  if (a.while_away != nullptr && *a.while_away) (*a.while_away)();
}

absl::Status RemoteMoeCpu(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                          const RemoteMoeArgs& a, RoutedExpertBackend& backend) {
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  Workspace& ws = ctx.workspace();
  WorkspaceScope scope(ws);
  const RouterSelection sel{.n_tokens = a.n,
                            .top_k = k,
                            .expert = std::vector<int32_t>(a.expert, a.expert + a.n * k),
                            .weight = std::vector<float>(a.weight, a.weight + a.n * k)};
  float* out = static_cast<float*>(a.out);
  std::fill_n(out, a.n * hidden, 0.0f);
  // The shared experts need nothing from the workers: they run while the routed tokens are
  // away, into their own buffer, and join the routed sum once it is back.
  float* shared = w.has_shared ? ws.Alloc<float>(a.n * hidden) : nullptr;  // [n, hidden]
  const std::function<void()> while_away = [&] {
    if (shared != nullptr) GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = shared});
    RunCallersWork(a);
  };
  DSV2_RETURN_IF_ERROR(backend.Run(ctx.cpu(), a.layer, sel, static_cast<const float*>(a.x), hidden,
                                   out, while_away));
  for (int64_t i = 0; shared != nullptr && i < a.n * hidden; ++i) out[i] += shared[i];
  return absl::OkStatus();
}

// What the coordinator owns of an MoE layer, enqueued on the GPU into `own` [n, hidden]
// (activation dtype): its own expert shard, if any, then the shared experts. False when it owns
// neither (then `own` is untouched).
bool EnqueueOwnExperts(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                       const RemoteMoeArgs& a, void* own) {
  const bool own_experts = !w.experts.empty();
  if (own_experts) {
    RoutedExperts(ctx, {.experts = w.experts.data(),
                        .n_local = static_cast<int64_t>(w.experts.size()),
                        .expert_begin = w.expert_begin,
                        .expert = a.expert,
                        .weight = a.weight,
                        .n_tokens = a.n,
                        .top_k = c.num_experts_per_tok,
                        .hidden = c.hidden_size,
                        .x = a.x,
                        .out = own});
  }
  if (w.has_shared) {
    GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = own, .accumulate = own_experts});
  }
  return own_experts || w.has_shared;
}

absl::Status Grow(DeviceBuffer& b, int64_t bytes) {
  if (b.bytes() >= bytes) return absl::OkStatus();
  DSV2_ASSIGN_OR_RETURN(b, DeviceBuffer::Allocate(Device::kCuda, bytes));
  return absl::OkStatus();
}

// Enqueues the router's choice (ids, weights: device) to the staging buffers' host halves; they
// are there after the next Synchronize (then SelectionFromStaging).
absl::Status StageSelection(CudaContext& cuda, RemoteMoeStaging& st, const RemoteMoeArgs& a,
                            int64_t slots) {
  DSV2_RETURN_IF_ERROR(st.expert.Reserve(slots * sizeof(int32_t)));
  DSV2_RETURN_IF_ERROR(st.weight.Reserve(slots * sizeof(float)));
  DSV2_RETURN_IF_ERROR(cuda.CopyToHost(st.expert.host<void>(), a.expert, slots * 4));
  return cuda.CopyToHost(st.weight.host<void>(), a.weight, slots * 4);
}

RouterSelection SelectionFromStaging(const RemoteMoeStaging& st, int64_t n, int64_t k) {
  const int32_t* ids = st.expert.host<int32_t>();
  const float* weights = st.weight.host<float>();
  return {.n_tokens = n,
          .top_k = k,
          .expert = std::vector<int32_t>(ids, ids + n * k),
          .weight = std::vector<float>(weights, weights + n * k)};
}

// The rows stay on the GPU (NCCL): see remote_moe.h.
absl::Status RemoteMoeOnDevice(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                               const RemoteMoeArgs& a, RoutedExpertBackend& backend) {
  CudaContext& cuda = ctx.cuda();
  RemoteMoeStaging& st = *a.staging;
  const DType act = ctx.act_dtype();
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  const int64_t rows = a.n * hidden, slots = a.n * k;
  DSV2_RETURN_IF_ERROR(Grow(st.x32_device, rows * sizeof(float)));
  DSV2_RETURN_IF_ERROR(Grow(st.out32_device, rows * sizeof(float)));
  DSV2_RETURN_IF_ERROR(st.own.Reserve(rows * DTypeSize(act)));
  float* x32 = st.x32_device.as<float>();      // [n, hidden]
  float* out32 = st.out32_device.as<float>();  // [n, hidden]
  CastRows(ctx, {.x = a.x, .x_dtype = act, .y = x32, .n = rows});
  DSV2_RETURN_IF_ERROR(cuda.Zero(out32, rows * sizeof(float)));
  DSV2_RETURN_IF_ERROR(StageSelection(cuda, st, a, slots));
  // The backend works on its own stream: x32 and the zeroed out32 must be complete.
  DSV2_RETURN_IF_ERROR(cuda.Synchronize());
  const RouterSelection sel = SelectionFromStaging(st, a.n, k);
  void* own = st.own.device<void>();
  bool has_own = false;
  const std::function<void()> while_away = [&] {
    has_own = EnqueueOwnExperts(ctx, c, w, a, own);
    RunCallersWork(a);
  };
  DSV2_RETURN_IF_ERROR(backend.Run(st.cpu, a.layer, sel, x32, hidden, out32, while_away));
  // out32 is complete (the backend waited); `own` is ordered before this on the stream.
  CastRows(ctx, {.x = out32,
                 .add = has_own ? own : nullptr,
                 .add_dtype = act,
                 .y = a.out,
                 .y_dtype = act,
                 .n = rows});
  return absl::OkStatus();
}

absl::Status RemoteMoeCuda(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                           const RemoteMoeArgs& a, RoutedExpertBackend& backend) {
  if (a.staging == nullptr) return absl::InternalError("RemoteMoe on a GPU needs staging buffers");
  if (backend.device_activations()) return RemoteMoeOnDevice(ctx, c, w, a, backend);
  CudaContext& cuda = ctx.cuda();
  RemoteMoeStaging& st = *a.staging;
  const DType act = ctx.act_dtype();
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  const int64_t rows = a.n * hidden, slots = a.n * k, row_bytes = rows * DTypeSize(act);
  DSV2_RETURN_IF_ERROR(st.x.Reserve(row_bytes));
  DSV2_RETURN_IF_ERROR(st.own.Reserve(row_bytes));

  // The router's choice and the rows, to the host (the one wait before the exchange).
  DSV2_RETURN_IF_ERROR(cuda.CopyToHost(st.x.host<void>(), a.x, row_bytes));
  DSV2_RETURN_IF_ERROR(StageSelection(cuda, st, a, slots));
  DSV2_RETURN_IF_ERROR(cuda.Synchronize());
  st.x32.resize(rows);
  st.out32.assign(rows, 0.0f);
  for (int64_t i = 0; i < rows; ++i) st.x32[i] = LoadAsFloat(st.x.host<void>(), act, i);
  const RouterSelection sel = SelectionFromStaging(st, a.n, k);

  // While the tokens are away the GPU computes what the coordinator owns: its own expert shard
  // (if any) and the shared experts, into `own`. Enqueued only: the host goes on to combine.
  void* own = st.own.device<void>();
  bool has_own = false;
  const std::function<void()> while_away = [&] {
    has_own = EnqueueOwnExperts(ctx, c, w, a, own);
    RunCallersWork(a);
  };
  DSV2_RETURN_IF_ERROR(
      backend.Run(st.cpu, a.layer, sel, st.x32.data(), hidden, st.out32.data(), while_away));

  // out = routed partial sums (float32) + own, rounded once to the activation dtype.
  if (has_own) {
    DSV2_RETURN_IF_ERROR(cuda.CopyToHost(st.own.host<void>(), own, row_bytes));
    DSV2_RETURN_IF_ERROR(cuda.Synchronize());
    for (int64_t i = 0; i < rows; ++i) st.out32[i] += LoadAsFloat(st.own.host<void>(), act, i);
  }
  if (act == DType::kF32) {
    std::memcpy(st.x.host<void>(), st.out32.data(), row_bytes);
  } else {
    uint16_t* dst = st.x.host<uint16_t>();
    for (int64_t i = 0; i < rows; ++i) dst[i] = FloatToBf16(st.out32[i]);
  }
  // Stream-ordered before the next layer reads `out`; the next RemoteMoe synchronises before
  // it writes the staging buffer again.
  return cuda.CopyToDevice(a.out, st.x.host<void>(), row_bytes);
}

}  // namespace

absl::Status RemoteMoe(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                       const RemoteMoeArgs& a, RoutedExpertBackend& backend) {
  return ctx.on_cuda() ? RemoteMoeCuda(ctx, c, w, a, backend) : RemoteMoeCpu(ctx, c, w, a, backend);
}

}  // namespace dsv2
