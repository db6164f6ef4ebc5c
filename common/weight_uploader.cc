#include "common/weight_uploader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "kernels/check.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

constexpr int64_t kStagingBytes = 32 << 20;  // per staging buffer (two of them)

// Writes n elements of `src` (dtype `from`) as `to` into dst. `to` is F32 or BF16; `from` may
// also be F16 or block-quantized (the GPU serves quantized weights widened to the activation
// dtype at upload, for now).
void Convert(const uint8_t* src, DType from, int64_t n, DType to, uint8_t* dst) {
  if (from == to) {
    std::memcpy(dst, src, n * DTypeSize(to));
    return;
  }
  thread_local std::vector<float> row;
  if (IsBlockQuantized(from)) {
    row.resize(n);
    DequantizeRow(from, src, row.data(), n);
  }
  for (int64_t i = 0; i < n; ++i) {
    const float v = IsBlockQuantized(from) ? row[i] : LoadAsFloat(src, from, i);
    if (to == DType::kF32) {
      std::memcpy(dst + 4 * i, &v, 4);
    } else {
      const uint16_t b = FloatToBf16(v);
      std::memcpy(dst + 2 * i, &b, 2);
    }
  }
}

}  // namespace

WeightUploader::WeightUploader(CudaContext& cuda, std::string what, int64_t total_bytes,
                               std::vector<DeviceBuffer>* storage)
    : cuda_(cuda), what_(std::move(what)), storage_(storage), total_(total_bytes) {}

WeightUploader::~WeightUploader() {
  for (void* p : staging_) {
    if (p != nullptr) cuda::FreeHost(p);
  }
}

absl::Status WeightUploader::Init() {
  for (void*& p : staging_) {
    DSV2_ASSIGN_OR_RETURN(p, cuda::MallocHost(kStagingBytes));
  }
  start_ = std::chrono::steady_clock::now();
  return absl::OkStatus();
}

absl::StatusOr<uint8_t*> WeightUploader::Allocate(int64_t bytes) {
  DSV2_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(Device::kCuda, bytes));
  uint8_t* p = b.as<uint8_t>();
  storage_->push_back(std::move(b));
  return p;
}

absl::StatusOr<WeightView> WeightUploader::Matrix(const WeightView& src, DType to, uint8_t* dst) {
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
    Progress(nr * RowBytes(src.dtype, src.cols));
  }
  return WeightView{
      .data = dst, .dtype = to, .rows = src.rows, .cols = src.cols, .row_stride = src.cols};
}

absl::StatusOr<WeightView> WeightUploader::NewMatrix(const WeightView& src, DType to) {
  if (src.data == nullptr) return WeightView{};
  DSV2_ASSIGN_OR_RETURN(uint8_t * dst, Allocate(src.rows * src.cols * DTypeSize(to)));
  return Matrix(src, to, dst);
}

absl::StatusOr<const float*> WeightUploader::Vector(const float* src, int64_t n) {
  if (src == nullptr) return nullptr;
  const WeightView v{.data = src, .dtype = DType::kF32, .rows = 1, .cols = n, .row_stride = n};
  DSV2_ASSIGN_OR_RETURN(const WeightView d, NewMatrix(v, DType::kF32));
  return static_cast<const float*>(d.data);
}

absl::Status WeightUploader::Experts(DType to, const std::vector<MlpWeights>& src,
                                     std::vector<MlpWeights>& dst, WeightView MlpWeights::*kind) {
  if (src.empty()) return absl::OkStatus();
  dst.resize(src.size());
  const WeightView& first = src[0].*kind;
  const int64_t each = first.rows * first.cols * DTypeSize(to);
  DSV2_ASSIGN_OR_RETURN(uint8_t * base, Allocate(each * static_cast<int64_t>(src.size())));
  for (size_t e = 0; e < src.size(); ++e) {
    DSV2_ASSIGN_OR_RETURN(dst[e].*kind, Matrix(src[e].*kind, to, base + e * each));
  }
  return absl::OkStatus();
}

absl::Status WeightUploader::Finish() {
  DSV2_RETURN_IF_ERROR(cuda_.Synchronize());
  Report(true);
  return absl::OkStatus();
}

void WeightUploader::Progress(int64_t bytes) {
  done_ += bytes;
  if (done_ - reported_ >= (int64_t{2} << 30)) Report(false);
}

void WeightUploader::Report(bool last) {
  reported_ = done_;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "dsv2: %s %s to %s: %.2f / %.2f GB (%.0f%%), %.1f s, %.2f GB/s\n",
               last ? "uploaded" : "uploading", what_.c_str(), cuda_.info().name.c_str(),
               done_ / 1e9, total_ / 1e9, total_ > 0 ? 100.0 * done_ / total_ : 100.0, s,
               s > 0 ? done_ / 1e9 / s : 0.0);
}

}  // namespace dsv2
