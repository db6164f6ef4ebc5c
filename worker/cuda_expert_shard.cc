#include "worker/cuda_expert_shard.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/weight_uploader.h"
#include "kernels/cast_rows.h"
#include "kernels/dtype.h"
#include "kernels/exec_context.h"
#include "kernels/routed_experts.h"

namespace dsv2 {

absl::StatusOr<std::unique_ptr<CudaExpertShard>> CudaExpertShard::Upload(const ExpertShard& host,
                                                                         CudaContext& cuda) {
  DSV2_RETURN_IF_ERROR(cuda.MakeCurrent());  // Configure runs on a gRPC thread
  std::unique_ptr<CudaExpertShard> s(new CudaExpertShard(cuda));
  s->begin_ = host.begin;
  s->end_ = host.end;
  const DType to = cuda.act_dtype();
  WeightUploader up(cuda, absl::StrCat("experts [", host.begin, ", ", host.end, ")"), host.bytes,
                    &s->storage_);
  DSV2_RETURN_IF_ERROR(up.Init());
  s->layers_.resize(host.layers.size());
  for (size_t l = 0; l < host.layers.size(); ++l) {
    for (WeightView MlpWeights::*kind : {&MlpWeights::gate, &MlpWeights::up, &MlpWeights::down}) {
      DSV2_RETURN_IF_ERROR(up.Experts(to, host.layers[l], s->layers_[l], kind));
    }
  }
  DSV2_RETURN_IF_ERROR(up.Finish());
  return s;
}

absl::Status CudaExpertShard::CheckLayer(const DispatchedTokens& t) const {
  if (t.layer < 0 || t.layer >= num_layers() || layers_[t.layer].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dispatch for layer ", t.layer, ", which has no routed experts here"));
  }
  return absl::OkStatus();
}

absl::Status CudaExpertShard::RunExperts(const DispatchedTokens& t, const void* x, void* out) {
  const int64_t slots = t.n * t.k;
  DSV2_RETURN_IF_ERROR(expert_.Reserve(slots * sizeof(int32_t)));
  DSV2_RETURN_IF_ERROR(weight_.Reserve(slots * sizeof(float)));
  // The previous layer's copies from these pinned buffers are done: Forward synchronises.
  std::memcpy(expert_.host<int32_t>(), t.expert, slots * sizeof(int32_t));
  std::memcpy(weight_.host<float>(), t.weight, slots * sizeof(float));
  DSV2_RETURN_IF_ERROR(
      cuda_.CopyToDevice(expert_.device<void>(), expert_.host<void>(), slots * sizeof(int32_t)));
  DSV2_RETURN_IF_ERROR(
      cuda_.CopyToDevice(weight_.device<void>(), weight_.host<void>(), slots * sizeof(float)));
  const ExecContext ctx(cuda_);
  ctx.workspace().Reset();  // the last layer's temporaries are dead: Forward synchronised
  const std::vector<MlpWeights>& experts = layers_[t.layer];
  RoutedExperts(ctx, {.experts = experts.data(),
                      .n_local = static_cast<int64_t>(experts.size()),
                      .expert_begin = begin_,
                      .expert = expert_.device<int32_t>(),
                      .weight = weight_.device<float>(),
                      .n_tokens = t.n,
                      .top_k = t.k,
                      .hidden = t.hidden,
                      .x = x,
                      .out = out});
  return cuda_.LastError("routed experts (worker)");
}

absl::StatusOr<const float*> CudaExpertShard::Enqueue(const DispatchedTokens& t, const float* x) {
  const DType act = cuda_.act_dtype();
  const int64_t rows = t.n * t.hidden;
  auto grow = [](DeviceBuffer& b, int64_t bytes) -> absl::Status {
    if (b.bytes() >= bytes) return absl::OkStatus();
    DSV2_ASSIGN_OR_RETURN(b, DeviceBuffer::Allocate(Device::kCuda, bytes));
    return absl::OkStatus();
  };
  DSV2_RETURN_IF_ERROR(grow(partial_, rows * static_cast<int64_t>(sizeof(float))));
  if (act == DType::kF32) {  // float32 rows are in the activation dtype already
    DSV2_RETURN_IF_ERROR(RunExperts(t, x, partial_.data()));
    return partial_.as<float>();
  }
  DSV2_RETURN_IF_ERROR(grow(x_, rows * DTypeSize(act)));
  DSV2_RETURN_IF_ERROR(grow(out_, rows * DTypeSize(act)));
  const ExecContext ctx(cuda_);
  CastRows(ctx, {.x = x, .y = x_.data(), .y_dtype = act, .n = rows});
  DSV2_RETURN_IF_ERROR(RunExperts(t, x_.data(), out_.data()));
  CastRows(ctx, {.x = out_.data(), .x_dtype = act, .y = partial_.data(), .n = rows});
  return partial_.as<float>();
}

absl::Status CudaExpertShard::Forward(const DispatchedTokens& t, float* partial) {
  DSV2_RETURN_IF_ERROR(CheckLayer(t));
  if (t.n == 0) return absl::OkStatus();
  // The layer loop's thread; before any allocation or copy (cheap when already current).
  DSV2_RETURN_IF_ERROR(cuda_.MakeCurrent());
  const int64_t row_bytes = t.n * t.hidden * static_cast<int64_t>(sizeof(float));
  // Host rows in through pinned memory, the partial sums back the same way (the copy back is
  // stream-ordered after the copy in, so one buffer serves both).
  DSV2_RETURN_IF_ERROR(rows_.Reserve(row_bytes));
  std::memcpy(rows_.host<void>(), t.x, row_bytes);
  DSV2_RETURN_IF_ERROR(cuda_.CopyToDevice(rows_.device<void>(), rows_.host<void>(), row_bytes));
  DSV2_ASSIGN_OR_RETURN(const float* sums, Enqueue(t, rows_.device<float>()));
  DSV2_RETURN_IF_ERROR(cuda_.CopyToHost(rows_.host<void>(), sums, row_bytes));
  DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
  std::memcpy(partial, rows_.host<void>(), row_bytes);
  return absl::OkStatus();
}

absl::StatusOr<const float*> CudaExpertShard::ForwardOnDevice(const DispatchedTokens& t) {
  DSV2_RETURN_IF_ERROR(CheckLayer(t));
  if (t.n == 0) return nullptr;
  DSV2_RETURN_IF_ERROR(cuda_.MakeCurrent());
  DSV2_ASSIGN_OR_RETURN(const float* sums, Enqueue(t, t.x));
  // The link sends from its own stream: the partial sums must be complete first.
  DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
  return sums;
}

}  // namespace dsv2
