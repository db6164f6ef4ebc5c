#include "worker/cuda_expert_shard.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/weight_uploader.h"
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

absl::Status CudaExpertShard::Forward(const DispatchedTokens& t, float* partial) {
  if (t.layer < 0 || t.layer >= num_layers() || layers_[t.layer].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dispatch for layer ", t.layer, ", which has no routed experts here"));
  }
  if (t.n == 0) return absl::OkStatus();
  DSV2_RETURN_IF_ERROR(cuda_.MakeCurrent());  // the layer loop's thread; cheap when current
  const DType act = cuda_.act_dtype();
  const int64_t rows = t.n * t.hidden, slots = t.n * t.k;
  DSV2_RETURN_IF_ERROR(x_.Reserve(rows * DTypeSize(act)));
  DSV2_RETURN_IF_ERROR(out_.Reserve(rows * DTypeSize(act)));
  DSV2_RETURN_IF_ERROR(expert_.Reserve(slots * sizeof(int32_t)));
  DSV2_RETURN_IF_ERROR(weight_.Reserve(slots * sizeof(float)));
  // The previous layer's copies are done: Forward ends with a synchronisation.
  NarrowRows(t.x, rows, act, x_.host<void>());
  std::memcpy(expert_.host<int32_t>(), t.expert, slots * sizeof(int32_t));
  std::memcpy(weight_.host<float>(), t.weight, slots * sizeof(float));
  DSV2_RETURN_IF_ERROR(
      cuda_.CopyToDevice(x_.device<void>(), x_.host<void>(), rows * DTypeSize(act)));
  DSV2_RETURN_IF_ERROR(
      cuda_.CopyToDevice(expert_.device<void>(), expert_.host<void>(), slots * sizeof(int32_t)));
  DSV2_RETURN_IF_ERROR(
      cuda_.CopyToDevice(weight_.device<void>(), weight_.host<void>(), slots * sizeof(float)));
  {
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
                        .x = x_.device<void>(),
                        .out = out_.device<void>()});
  }
  DSV2_RETURN_IF_ERROR(cuda_.LastError("routed experts (worker)"));
  DSV2_RETURN_IF_ERROR(
      cuda_.CopyToHost(out_.host<void>(), out_.device<void>(), rows * DTypeSize(act)));
  DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
  WidenRows(out_.host<void>(), act, rows, partial);
  return absl::OkStatus();
}

}  // namespace dsv2
