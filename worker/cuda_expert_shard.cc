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
namespace {

// dst[i] = src[i] in `to` (float32 or bfloat16, rounded to nearest even).
void NarrowRows(const float* src, int64_t count, DType to, void* dst) {
  if (to == DType::kF32) {
    std::memcpy(dst, src, count * sizeof(float));
    return;
  }
  auto* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < count; ++i) out[i] = FloatToBf16(src[i]);
}

// dst[i] = float(src[i]), src in `from` (exact).
void WidenRows(const void* src, DType from, int64_t count, float* dst) {
  if (from == DType::kF32) {
    std::memcpy(dst, src, count * sizeof(float));
    return;
  }
  const auto* in = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < count; ++i) dst[i] = Bf16ToFloat(in[i]);
}

}  // namespace

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

absl::Status CudaExpertShard::Forward(const DispatchedTokens& t, float* partial) {
  DSV2_RETURN_IF_ERROR(CheckLayer(t));
  if (t.n == 0) return absl::OkStatus();
  DSV2_RETURN_IF_ERROR(cuda_.MakeCurrent());  // the layer loop's thread; cheap when current
  const DType act = cuda_.act_dtype();
  const int64_t rows = t.n * t.hidden, row_bytes = rows * DTypeSize(act);
  DSV2_RETURN_IF_ERROR(x_.Reserve(row_bytes));
  DSV2_RETURN_IF_ERROR(out_.Reserve(row_bytes));
  NarrowRows(t.x, rows, act, x_.host<void>());
  DSV2_RETURN_IF_ERROR(cuda_.CopyToDevice(x_.device<void>(), x_.host<void>(), row_bytes));
  DSV2_RETURN_IF_ERROR(RunExperts(t, x_.device<void>(), out_.device<void>()));
  DSV2_RETURN_IF_ERROR(cuda_.CopyToHost(out_.host<void>(), out_.device<void>(), row_bytes));
  DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
  WidenRows(out_.host<void>(), act, rows, partial);
  return absl::OkStatus();
}

absl::StatusOr<const float*> CudaExpertShard::ForwardOnDevice(const DispatchedTokens& t) {
  DSV2_RETURN_IF_ERROR(CheckLayer(t));
  if (t.n == 0) return nullptr;
  DSV2_RETURN_IF_ERROR(cuda_.MakeCurrent());
  const DType act = cuda_.act_dtype();
  const int64_t rows = t.n * t.hidden;
  const ExecContext ctx(cuda_);
  const float* partial = nullptr;
  if (act == DType::kF32) {  // the rows are in the activation dtype already
    DSV2_RETURN_IF_ERROR(out_.Reserve(rows * sizeof(float)));
    DSV2_RETURN_IF_ERROR(RunExperts(t, t.x, out_.device<void>()));
    partial = out_.device<float>();
  } else {
    const int64_t row_bytes = rows * DTypeSize(act);
    DSV2_RETURN_IF_ERROR(x_.Reserve(row_bytes));
    DSV2_RETURN_IF_ERROR(out_.Reserve(row_bytes));
    if (partial_.bytes() < rows * static_cast<int64_t>(sizeof(float))) {
      DSV2_ASSIGN_OR_RETURN(partial_, DeviceBuffer::Allocate(Device::kCuda, rows * sizeof(float)));
    }
    CastRows(ctx, {.x = t.x, .y = x_.device<void>(), .y_dtype = act, .n = rows});
    DSV2_RETURN_IF_ERROR(RunExperts(t, x_.device<void>(), out_.device<void>()));
    CastRows(ctx, {.x = out_.device<void>(), .x_dtype = act, .y = partial_.data(), .n = rows});
    partial = partial_.as<float>();
  }
  // The link sends from its own stream: the partial sums must be complete first.
  DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
  return partial;
}

}  // namespace dsv2
