#include "coordinator/model/remote_moe.h"

#include <algorithm>
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
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok, rows = a.n * hidden;
  const DType act = ctx.act_dtype();
  const bool f32 = act == DType::kF32;
  Workspace& ws = ctx.workspace();
  WorkspaceScope scope(ws);
  const RouterSelection sel{.n_tokens = a.n,
                            .top_k = k,
                            .expert = std::vector<int32_t>(a.expert, a.expert + a.n * k),
                            .weight = std::vector<float>(a.weight, a.weight + a.n * k)};
  // The data plane's float32 rows: the activations themselves, or widened from bfloat16.
  const float* x32 = static_cast<const float*>(a.x);
  if (!f32) {
    float* widened = ws.Alloc<float>(rows);
    CastRows(ctx, {.x = a.x, .x_dtype = act, .y = widened, .n = rows});
    x32 = widened;
  }
  float* out32 = f32 ? static_cast<float*>(a.out) : ws.Alloc<float>(rows);
  std::fill_n(out32, rows, 0.0f);
  // The shared experts need nothing from the workers: they run while the routed tokens are
  // away, into their own buffer, and join the routed sum once it is back.
  void* shared = w.has_shared ? ws.Alloc(act, rows) : nullptr;  // [n, hidden]
  const std::function<void()> while_away = [&] {
    if (shared != nullptr) GatedMlp(ctx, w.shared, {.x = a.x, .n = a.n, .out = shared});
    RunCallersWork(a);
  };
  DSV2_RETURN_IF_ERROR(backend.Run(ctx.cpu(), a.layer, sel, x32, hidden, out32, while_away));
  // out = the routed sum + the shared experts, rounded once (as RemoteMoeCuda).
  if (f32 && shared == nullptr) return absl::OkStatus();
  CastRows(ctx,
           {.x = out32, .add = shared, .add_dtype = act, .y = a.out, .y_dtype = act, .n = rows});
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

// The router's choice (ids, weights: device) to the host through the staging buffers: enqueued
// here, read after the next Synchronize.
absl::Status StageSelection(CudaContext& cuda, RemoteMoeStaging& st, const RemoteMoeArgs& a,
                            int64_t slots) {
  DSV2_RETURN_IF_ERROR(st.expert.Reserve(slots * sizeof(int32_t)));
  DSV2_RETURN_IF_ERROR(st.weight.Reserve(slots * sizeof(float)));
  DSV2_RETURN_IF_ERROR(cuda.CopyToHost(st.expert.host<void>(), a.expert, slots * 4));
  return cuda.CopyToHost(st.weight.host<void>(), a.weight, slots * 4);
}

absl::Status RemoteMoeCuda(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                           const RemoteMoeArgs& a, RoutedExpertBackend& backend) {
  if (a.staging == nullptr) return absl::InternalError("RemoteMoe on a GPU needs staging buffers");
  CudaContext& cuda = ctx.cuda();
  RemoteMoeStaging& st = *a.staging;
  const DType act = ctx.act_dtype();
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  const int64_t rows = a.n * hidden, slots = a.n * k, row_bytes = rows * sizeof(float);
  // NCCL: the backend reads and writes device memory (on its own stream); TCP: host memory.
  const bool on_device = backend.device_activations();
  DSV2_RETURN_IF_ERROR(st.x32.Reserve(row_bytes));
  DSV2_RETURN_IF_ERROR(st.out32.Reserve(row_bytes));
  if (st.own.bytes() < rows * DTypeSize(act)) {
    DSV2_ASSIGN_OR_RETURN(st.own, DeviceBuffer::Allocate(Device::kCuda, rows * DTypeSize(act)));
  }
  CastRows(ctx, {.x = a.x, .x_dtype = act, .y = st.x32.device<void>(), .n = rows});
  if (on_device) {
    DSV2_RETURN_IF_ERROR(cuda.Zero(st.out32.device<void>(), row_bytes));
  } else {
    DSV2_RETURN_IF_ERROR(cuda.CopyToHost(st.x32.host<void>(), st.x32.device<void>(), row_bytes));
  }
  DSV2_RETURN_IF_ERROR(StageSelection(cuda, st, a, slots));
  DSV2_RETURN_IF_ERROR(cuda.Synchronize());  // the one wait before the exchange
  // The previous layer's copy from out32's host half finished with that wait.
  if (!on_device) std::fill_n(st.out32.host<float>(), rows, 0.0f);
  const RouterSelection sel{
      .n_tokens = a.n,
      .top_k = k,
      .expert = std::vector<int32_t>(st.expert.host<int32_t>(), st.expert.host<int32_t>() + slots),
      .weight = std::vector<float>(st.weight.host<float>(), st.weight.host<float>() + slots)};

  // While the tokens are away the GPU computes what the coordinator owns: its own expert shard
  // (if any) and the shared experts, into `own`. Enqueued only: the host goes on to combine.
  void* own = st.own.data();
  bool has_own = false;
  const std::function<void()> while_away = [&] {
    has_own = EnqueueOwnExperts(ctx, c, w, a, own);
    RunCallersWork(a);
  };
  float* x32 = on_device ? st.x32.device<float>() : st.x32.host<float>();
  float* out32 = on_device ? st.out32.device<float>() : st.out32.host<float>();
  DSV2_RETURN_IF_ERROR(backend.Run(st.cpu, a.layer, sel, x32, hidden, out32, while_away));
  if (!on_device) {
    DSV2_RETURN_IF_ERROR(
        cuda.CopyToDevice(st.out32.device<void>(), st.out32.host<void>(), row_bytes));
  }
  // out = partial sums + own, rounded once; stream-ordered after `own` and the copy (over NCCL
  // the backend has waited for its additions).
  CastRows(ctx, {.x = st.out32.device<void>(),
                 .add = has_own ? own : nullptr,
                 .add_dtype = act,
                 .y = a.out,
                 .y_dtype = act,
                 .n = rows});
  return absl::OkStatus();
}

}  // namespace

absl::Status RemoteMoe(const ExecContext& ctx, const ModelConfig& c, const MoeWeights& w,
                       const RemoteMoeArgs& a, RoutedExpertBackend& backend) {
  return ctx.on_cuda() ? RemoteMoeCuda(ctx, c, w, a, backend) : RemoteMoeCpu(ctx, c, w, a, backend);
}

}  // namespace dsv2
