#include "coordinator/model/model_weights_upload.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/check.h"

namespace dsv2 {
namespace {

constexpr int64_t kStagingBytes = 32 << 20;  // per staging buffer (two of them)

// Writes n elements of `src` (dtype `from`) as `to` into dst. Both are F32 or BF16 (or F16 in).
void Convert(const uint8_t* src, DType from, int64_t n, DType to, uint8_t* dst) {
  if (from == to) {
    std::memcpy(dst, src, n * DTypeSize(to));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float v = LoadAsFloat(src, from, i);
    if (to == DType::kF32) {
      std::memcpy(dst + 4 * i, &v, 4);
    } else {
      const uint16_t b = FloatToBf16(v);
      std::memcpy(dst + 2 * i, &b, 2);
    }
  }
}

class Uploader {
 public:
  Uploader(CudaContext& cuda, int64_t total_bytes) : cuda_(cuda), total_(total_bytes) {}
  ~Uploader() {
    for (void* p : staging_) {
      if (p != nullptr) cuda::FreeHost(p);
    }
  }

  absl::Status Init() {
    for (void*& p : staging_) {
      DSV2_ASSIGN_OR_RETURN(p, cuda::MallocHost(kStagingBytes));
    }
    start_ = std::chrono::steady_clock::now();
    return absl::OkStatus();
  }

  // A device buffer of `bytes`, owned by `out`.
  absl::StatusOr<uint8_t*> Allocate(ModelWeights& out, int64_t bytes) {
    DSV2_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(Device::kCuda, bytes));
    uint8_t* p = b.as<uint8_t>();
    out.device_storage.push_back(std::move(b));
    return p;
  }

  // Copies `src` (rows row_stride apart) densely to dst as `to`; returns the device view.
  absl::StatusOr<WeightView> Matrix(const WeightView& src, DType to, uint8_t* dst) {
    const int64_t row_bytes = src.cols * DTypeSize(to);
    const int64_t rows_per_chunk =
        std::max<int64_t>(1, kStagingBytes / std::max<int64_t>(1, row_bytes));
    for (int64_t r0 = 0; r0 < src.rows; r0 += rows_per_chunk) {
      const int64_t nr = std::min(rows_per_chunk, src.rows - r0);
      DSV2_CHECK_MSG(nr * row_bytes <= kStagingBytes, "one row exceeds the staging buffer");
      uint8_t* stage = static_cast<uint8_t*>(staging_[next_]);
      for (int64_t r = 0; r < nr; ++r) {
        Convert(src.RowPtr(r0 + r), src.dtype, src.cols, to, stage + r * row_bytes);
      }
      // The copy from this buffer two chunks ago must be done before it is refilled next
      // time: wait for the stream (the other buffer's copy) here, after converting.
      DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
      DSV2_RETURN_IF_ERROR(cuda_.CopyToDevice(dst + r0 * row_bytes, stage, nr * row_bytes));
      next_ ^= 1;
      Progress(nr * src.cols * DTypeSize(src.dtype));
    }
    return WeightView{
        .data = dst, .dtype = to, .rows = src.rows, .cols = src.cols, .row_stride = src.cols};
  }

  absl::StatusOr<WeightView> NewMatrix(ModelWeights& out, const WeightView& src, DType to) {
    DSV2_ASSIGN_OR_RETURN(uint8_t * dst, Allocate(out, src.rows * src.cols * DTypeSize(to)));
    return Matrix(src, to, dst);
  }

  absl::StatusOr<const float*> Vector(ModelWeights& out, const float* src, int64_t n) {
    if (src == nullptr) return nullptr;
    const WeightView v{.data = src, .dtype = DType::kF32, .rows = 1, .cols = n, .row_stride = n};
    DSV2_ASSIGN_OR_RETURN(const WeightView d, NewMatrix(out, v, DType::kF32));
    return static_cast<const float*>(d.data);
  }

  absl::Status Finish() {
    DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
    Report(true);
    return absl::OkStatus();
  }

 private:
  void Progress(int64_t bytes) {
    done_ += bytes;
    if (done_ - reported_ >= (int64_t{2} << 30)) Report(false);
  }
  void Report(bool last) {
    reported_ = done_;
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "dsv2: %s weights to %s: %.2f / %.2f GB (%.0f%%), %.1f s, %.2f GB/s\n",
                 last ? "uploaded" : "uploading", cuda_.info().name.c_str(), done_ / 1e9,
                 total_ / 1e9, total_ > 0 ? 100.0 * done_ / total_ : 100.0, s,
                 s > 0 ? done_ / 1e9 / s : 0.0);
  }

  CudaContext& cuda_;
  void* staging_[2] = {nullptr, nullptr};
  int next_ = 0;
  int64_t total_ = 0, done_ = 0, reported_ = 0;
  std::chrono::steady_clock::time_point start_;
};

int64_t HostBytes(const WeightView& w) { return w.data ? w.bytes() : 0; }

int64_t HostBytes(const ModelWeights& h) {
  int64_t b = HostBytes(h.embed) + (h.lm_head.data != h.embed.data ? HostBytes(h.lm_head) : 0);
  auto mlp = [](const MlpWeights& m) {
    return HostBytes(m.gate) + HostBytes(m.up) + HostBytes(m.down);
  };
  for (const LayerWeights& L : h.layers) {
    const AttentionWeights& a = L.attn;
    b += HostBytes(a.q_proj) + HostBytes(a.q_a_proj) + HostBytes(a.q_b_proj) +
         HostBytes(a.kv_a_proj) + HostBytes(a.kv_b_proj) + HostBytes(a.w_uk_t) +
         HostBytes(a.o_proj);
    b += L.is_moe ? HostBytes(L.moe.router) + (L.moe.has_shared ? mlp(L.moe.shared) : 0)
                  : mlp(L.mlp);
    for (const MlpWeights& e : L.moe.experts) b += mlp(e);
  }
  return b;
}

// One matrix kind of every routed expert of a layer, in one allocation: [E, rows, cols].
absl::Status UploadExperts(Uploader& up, ModelWeights& out, DType to,
                           const std::vector<MlpWeights>& src, std::vector<MlpWeights>& dst,
                           WeightView MlpWeights::*kind) {
  if (src.empty()) return absl::OkStatus();
  const WeightView& first = src[0].*kind;
  const int64_t each = first.rows * first.cols * DTypeSize(to);
  DSV2_ASSIGN_OR_RETURN(uint8_t * base, up.Allocate(out, each * static_cast<int64_t>(src.size())));
  for (size_t e = 0; e < src.size(); ++e) {
    DSV2_ASSIGN_OR_RETURN(dst[e].*kind, up.Matrix(src[e].*kind, to, base + e * each));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelWeights> UploadModelWeights(const ModelConfig& c, const ModelWeights& h,
                                                CudaContext& cuda) {
  const DType to = cuda.act_dtype();
  Uploader up(cuda, HostBytes(h));
  DSV2_RETURN_IF_ERROR(up.Init());
  ModelWeights d;
  auto matrix = [&](const WeightView& src) -> absl::StatusOr<WeightView> {
    if (src.data == nullptr) return WeightView{};
    return up.NewMatrix(d, src, to);
  };
  auto mlp = [&](const MlpWeights& src, MlpWeights& dst) -> absl::Status {
    DSV2_ASSIGN_OR_RETURN(dst.gate, matrix(src.gate));
    DSV2_ASSIGN_OR_RETURN(dst.up, matrix(src.up));
    DSV2_ASSIGN_OR_RETURN(dst.down, matrix(src.down));
    return absl::OkStatus();
  };
  DSV2_ASSIGN_OR_RETURN(d.embed, matrix(h.embed));
  d.layers.resize(h.layers.size());
  for (size_t l = 0; l < h.layers.size(); ++l) {
    const LayerWeights& hl = h.layers[l];
    LayerWeights& dl = d.layers[l];
    DSV2_ASSIGN_OR_RETURN(dl.input_norm, up.Vector(d, hl.input_norm, c.hidden_size));
    DSV2_ASSIGN_OR_RETURN(dl.post_attention_norm,
                          up.Vector(d, hl.post_attention_norm, c.hidden_size));
    const AttentionWeights& ha = hl.attn;
    AttentionWeights& da = dl.attn;
    DSV2_ASSIGN_OR_RETURN(da.q_proj, matrix(ha.q_proj));
    DSV2_ASSIGN_OR_RETURN(da.q_a_proj, matrix(ha.q_a_proj));
    DSV2_ASSIGN_OR_RETURN(da.q_a_norm, up.Vector(d, ha.q_a_norm, c.q_lora_rank.value_or(0)));
    DSV2_ASSIGN_OR_RETURN(da.q_b_proj, matrix(ha.q_b_proj));
    DSV2_ASSIGN_OR_RETURN(da.kv_a_proj, matrix(ha.kv_a_proj));
    DSV2_ASSIGN_OR_RETURN(da.kv_a_norm, up.Vector(d, ha.kv_a_norm, c.kv_lora_rank));
    DSV2_ASSIGN_OR_RETURN(da.kv_b_proj, matrix(ha.kv_b_proj));
    DSV2_ASSIGN_OR_RETURN(da.w_uk_t, matrix(ha.w_uk_t));
    DSV2_ASSIGN_OR_RETURN(da.o_proj, matrix(ha.o_proj));
    dl.is_moe = hl.is_moe;
    if (!hl.is_moe) {
      DSV2_RETURN_IF_ERROR(mlp(hl.mlp, dl.mlp));
      continue;
    }
    const MoeWeights& hm = hl.moe;
    MoeWeights& dm = dl.moe;
    DSV2_ASSIGN_OR_RETURN(dm.router, matrix(hm.router));
    dm.expert_begin = hm.expert_begin;
    dm.experts.resize(hm.experts.size());
    for (WeightView MlpWeights::*kind : {&MlpWeights::gate, &MlpWeights::up, &MlpWeights::down}) {
      DSV2_RETURN_IF_ERROR(UploadExperts(up, d, to, hm.experts, dm.experts, kind));
    }
    dm.has_shared = hm.has_shared;
    if (hm.has_shared) DSV2_RETURN_IF_ERROR(mlp(hm.shared, dm.shared));
  }
  DSV2_ASSIGN_OR_RETURN(d.final_norm, up.Vector(d, h.final_norm, c.hidden_size));
  if (h.lm_head.data == h.embed.data) {
    d.lm_head = d.embed;
  } else {
    DSV2_ASSIGN_OR_RETURN(d.lm_head, matrix(h.lm_head));
  }
  DSV2_RETURN_IF_ERROR(up.Finish());
  return d;
}

}  // namespace dsv2
