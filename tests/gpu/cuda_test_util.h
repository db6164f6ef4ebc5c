// Shared pieces of the CUDA op parity tests: a fixture that skips without a device, host data
// in the run's activation dtype, device buffers with a sticky status, and a tolerant compare
// that reports the first bad element and a count instead of one line per element.
//
// Tolerances: float32 runs compare at 1e-5 relative (1e-4 where an op sums thousands of
// products in an order the GPU chooses). bfloat16 runs feed both twins the same bf16-rounded
// inputs; the CPU twin then computes in float32 while the GPU rounds its output (and, per the
// contracts, some intermediates) to bf16, 8 significant bits or ≤ 2^-9 ≈ 0.2% per rounding.
// A handful of such roundings stay below 1%, so kBf16Tol = 2e-2 has margin, while a wrong
// index, stride or formula is off by O(1).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu_context.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/device_buffer.h"
#include "kernels/dtype.h"

namespace dsv2::cuda_test {

inline constexpr double kF32Tol = 1e-5;
inline constexpr double kF32LongSumTol = 1e-4;
inline constexpr double kBf16Tol = 2e-2;
inline constexpr uint8_t kPoisonByte = 0xff;  // all-ones: NaN in F32 and BF16, -1 in I32

inline std::vector<float> RandomFloats(int64_t n, std::mt19937& rng, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::uniform_real_distribution<float> uni(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = uni(rng);
  return v;
}

// The values `dtype` (F32 or BF16) can hold: BF16 rounds to nearest even, F32 is unchanged.
inline std::vector<float> RoundTo(DType dtype, std::vector<float> v) {
  if (dtype == DType::kBF16) {
    for (float& f : v) f = Bf16ToFloat(FloatToBf16(f));
  }
  return v;
}

// The bytes of `v` stored as `dtype` (F32 or BF16).
inline std::vector<uint8_t> Encode(DType dtype, const std::vector<float>& v) {
  std::vector<uint8_t> bytes(v.size() * static_cast<size_t>(DTypeSize(dtype)));
  if (dtype == DType::kBF16) {
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t b = FloatToBf16(v[i]);
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    }
  } else {
    std::memcpy(bytes.data(), v.data(), bytes.size());
  }
  return bytes;
}

inline std::vector<float> Decode(DType dtype, const std::vector<uint8_t>& bytes) {
  const int64_t n = static_cast<int64_t>(bytes.size()) / DTypeSize(dtype);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = LoadAsFloat(bytes.data(), dtype, i);
  return v;
}

// Root mean square of the finite values of v (a scale for ops whose outputs are all small).
inline double Rms(const std::vector<float>& v) {
  double ss = 0.0;
  int64_t n = 0;
  for (float f : v) {
    if (std::isfinite(f)) {
      ss += static_cast<double>(f) * f;
      ++n;
    }
  }
  return n == 0 ? 0.0 : std::sqrt(ss / static_cast<double>(n));
}

// Every element: |got − want| ≤ rel_tol · max(floor, |want|). A NaN in `want` marks an element
// the op must not write (padding, rows of other tokens): `got` must still hold the NaN poison
// there. Reports one failure per call: the count of bad elements and the first few of them.
inline bool ExpectAllClose(const std::vector<float>& got, const std::vector<float>& want,
                           double rel_tol, const std::string& what, double floor = 1.0) {
  if (got.size() != want.size()) {
    ADD_FAILURE() << what << ": " << got.size() << " elements, want " << want.size();
    return false;
  }
  int64_t bad = 0;
  std::ostringstream first;
  first.precision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const bool ok =
        std::isnan(w) ? std::isnan(g) : std::abs(g - w) <= rel_tol * std::max(floor, std::abs(w));
    if (ok) continue;
    if (++bad <= 3) {
      first << "\n  [" << i << "] got " << g << ", want " << w
            << (std::isnan(w) ? " (must stay unwritten)" : "");
    }
  }
  if (bad > 0) {
    ADD_FAILURE() << what << ": " << bad << " of " << got.size() << " elements differ (rel_tol "
                  << rel_tol << ", floor " << floor << "); first:" << first.str();
  }
  return bad == 0;
}

// Exact equality (expert ids), reported like ExpectAllClose.
template <typename T>
bool ExpectAllEqual(const std::vector<T>& got, const std::vector<T>& want,
                    const std::string& what) {
  if (got.size() != want.size()) {
    ADD_FAILURE() << what << ": " << got.size() << " elements, want " << want.size();
    return false;
  }
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (++bad <= 3) first << "\n  [" << i << "] got " << got[i] << ", want " << want[i];
  }
  if (bad > 0) {
    ADD_FAILURE() << what << ": " << bad << " of " << got.size()
                  << " elements differ; first:" << first.str();
  }
  return bad == 0;
}

// Device memory for one test case. Every buffer lives until the scratch is destroyed. The first
// failing CUDA call is kept in status(); tests ASSERT on it after uploading and after
// downloading, so later calls after a failure are harmless no-ops returning null/empty data.
class DeviceScratch {
 public:
  explicit DeviceScratch(CudaContext& ctx) : ctx_(ctx) {}

  const absl::Status& status() const { return status_; }
  bool ok() const { return status_.ok(); }

  // Fresh device memory of `bytes` bytes, uninitialised.
  void* Allocate(int64_t bytes) {
    if (!ok()) return nullptr;
    absl::StatusOr<DeviceBuffer> b =
        DeviceBuffer::Allocate(Device::kCuda, std::max<int64_t>(bytes, 1));
    if (!b.ok()) {
      Note(b.status());
      return nullptr;
    }
    buffers_.push_back(*std::move(b));
    return buffers_.back().data();
  }

  // A device copy of `bytes` bytes at `src`.
  void* UploadBytes(const void* src, int64_t bytes) {
    void* dst = Allocate(bytes);
    if (dst != nullptr) Note(ctx_.CopyToDevice(dst, src, bytes));
    // Pageable host memory: wait so the source may be freed or reused right away.
    if (dst != nullptr) Note(ctx_.Synchronize());
    return ok() ? dst : nullptr;
  }
  template <typename T>
  T* Upload(const std::vector<T>& v) {
    return static_cast<T*>(UploadBytes(v.data(), static_cast<int64_t>(v.size() * sizeof(T))));
  }
  // Host floats stored on the device as `dtype` (F32 or BF16).
  void* UploadAs(DType dtype, const std::vector<float>& v) {
    const std::vector<uint8_t> bytes = Encode(dtype, v);
    return UploadBytes(bytes.data(), static_cast<int64_t>(bytes.size()));
  }
  // `bytes` bytes of the poison pattern: an element the op forgets to write reads back as NaN.
  void* Poisoned(int64_t bytes) {
    const std::vector<uint8_t> poison(static_cast<size_t>(bytes), kPoisonByte);
    return UploadBytes(poison.data(), bytes);
  }

  // Waits for the stream (a kernel fault surfaces here), then copies `bytes` bytes back.
  std::vector<uint8_t> DownloadBytes(const void* src, int64_t bytes) {
    std::vector<uint8_t> out(static_cast<size_t>(bytes));
    Note(ctx_.LastError("kernel launch"));
    Note(ctx_.Synchronize());
    if (ok()) Note(ctx_.CopyToHost(out.data(), src, bytes));
    if (ok()) Note(ctx_.Synchronize());
    return out;
  }
  template <typename T>
  std::vector<T> Download(const T* src, int64_t count) {
    const std::vector<uint8_t> bytes = DownloadBytes(src, count * static_cast<int64_t>(sizeof(T)));
    std::vector<T> out(static_cast<size_t>(count));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
  // `count` elements of `dtype` (F32 or BF16) as floats.
  std::vector<float> DownloadAs(DType dtype, const void* src, int64_t count) {
    return Decode(dtype, DownloadBytes(src, count * DTypeSize(dtype)));
  }

 private:
  void Note(absl::Status s) {
    if (status_.ok() && !s.ok()) status_ = std::move(s);
  }

  CudaContext& ctx_;
  std::vector<DeviceBuffer> buffers_;
  absl::Status status_;
};

// The fixture of every CUDA parity test, parameterised over the activation dtype of the run.
// Without a usable device each test skips visibly in SetUp.
class CudaOpTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(0);
    if (!info.ok()) {
      // ProbeCudaDevice's lines mostly start so already; say it once.
      const std::string why(info.status().message().data(), info.status().message().size());
      GTEST_SKIP() << (why.starts_with("no CUDA device") ? "" : "no CUDA device: ") << why;
    }
    CudaContextOptions options;
    options.device = 0;
    options.act_dtype = act();
    absl::StatusOr<std::unique_ptr<CudaContext>> ctx = CudaContext::Create(options);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    cuda_ = *std::move(ctx);
    cpu_ = std::make_unique<CpuContext>();
  }

  DType act() const { return GetParam(); }
  bool bf16() const { return act() == DType::kBF16; }
  CudaContext& cuda() { return *cuda_; }
  const CpuContext& cpu() const { return *cpu_; }
  // The tolerance of this run: `f32_tol` in float32, kBf16Tol in bfloat16.
  double Tol(double f32_tol = kF32Tol) const { return bf16() ? kBf16Tol : f32_tol; }
  // Inputs as the GPU will see them, so that the CPU twin is fed exactly the same values.
  std::vector<float> Act(std::vector<float> v) const { return RoundTo(act(), std::move(v)); }

 private:
  std::unique_ptr<CudaContext> cuda_;
  std::unique_ptr<CpuContext> cpu_;
};

}  // namespace dsv2::cuda_test

namespace dsv2 {
// gtest prints the parameter of a failing test with this (found by argument-dependent lookup).
inline void PrintTo(DType dtype, std::ostream* os) { *os << DTypeName(dtype); }
}  // namespace dsv2

namespace dsv2::cuda_test {

inline std::string DTypeParamName(const ::testing::TestParamInfo<DType>& info) {
  return std::string(DTypeName(info.param));
}

// Host vector of `n` NaNs: the CPU twin's output buffers start as poisoned as the GPU's, so
// that elements neither twin may write compare equal (NaN) and nothing reads stale values.
inline std::vector<float> NanVector(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n), std::nanf(""));
}

}  // namespace dsv2::cuda_test

// Instantiates a CudaOpTest subclass for float32 and bfloat16 runs: Suite.Test/F32, /BF16.
#define DSV2_CUDA_DTYPE_SUITE(Suite)                                                     \
  INSTANTIATE_TEST_SUITE_P(Dtypes, Suite,                                                \
                           ::testing::Values(::dsv2::DType::kF32, ::dsv2::DType::kBF16), \
                           ::dsv2::cuda_test::DTypeParamName)
