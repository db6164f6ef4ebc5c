// kernels/cuda/cuda_context.h over the CPU emulation: one emulated device whose memory is host
// memory (fresh allocations are filled with 0xff bytes, NaN in float and bf16, as a GPU's
// uninitialised memory is garbage), a stream on which every launch has finished when it
// returns, and no cuBLAS or graphs (they are not emulated: see tests/emu/cuda_emu.h).
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/matmul.h"
#include "tests/emu/include/cuda_runtime.h"

namespace dsv2 {

absl::StatusOr<CudaDeviceInfo> ProbeCudaDevice(int device) {
  if (device != 0) return absl::FailedPreconditionError("no CUDA device: the emulation has one");
  CudaDeviceInfo info;
  info.device = 0;
  info.name = "CPU emulation of the CUDA thread model";
  info.cc_major = 9;
  info.cc_minor = 0;
  info.total_memory = int64_t{16} << 30;
  info.free_memory = info.total_memory;
  cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, 0);
  info.uuid = "00000000000000000000000000000e30";
  return info;
}

absl::StatusOr<std::unique_ptr<CudaContext>> CudaContext::Create(const CudaContextOptions& o) {
  if (o.act_dtype != DType::kF32 && o.act_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("CUDA activations are float32 or bfloat16");
  }
  absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(o.device);
  if (!info.ok()) return info.status();
  std::unique_ptr<CudaContext> c(new CudaContext());
  c->info_ = *info;
  c->act_dtype_ = o.act_dtype;
  c->workspace_ = std::make_unique<Workspace>(Device::kCuda, o.workspace_bytes);
  return c;
}

CudaContext::~CudaContext() = default;
absl::Status CudaContext::MakeCurrent() { return absl::OkStatus(); }

absl::Status CudaContext::Zero(void* dst, int64_t bytes) {
  std::memset(dst, 0, static_cast<size_t>(bytes));
  return absl::OkStatus();
}
absl::Status CudaContext::Synchronize() { return absl::OkStatus(); }
absl::Status CudaContext::CopyToDevice(void* dst, const void* src, int64_t bytes) {
  std::memcpy(dst, src, static_cast<size_t>(bytes));
  return absl::OkStatus();
}
absl::Status CudaContext::CopyToHost(void* dst, const void* src, int64_t bytes) {
  std::memcpy(dst, src, static_cast<size_t>(bytes));
  return absl::OkStatus();
}
absl::Status CudaContext::LastError(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::StatusOr<std::unique_ptr<CudaGraph>> CudaGraph::Capture(
    CudaContext&, const std::function<absl::Status()>&) {
  return absl::UnimplementedError("CUDA graphs are not emulated");
}
CudaGraph::~CudaGraph() = default;
absl::Status CudaGraph::Launch() {
  return absl::UnimplementedError("CUDA graphs are not emulated");
}

absl::StatusOr<double> MeasureCopyBandwidth(CudaContext&, int64_t) {
  return absl::UnimplementedError("the emulation has no bandwidth to measure");
}

namespace cuda {

absl::StatusOr<void*> Malloc(int64_t bytes) {
  // Exactly `bytes` (ASan sees an access past the end), 256-byte aligned like cudaMalloc's.
  void* p = nullptr;
  if (posix_memalign(&p, 256, static_cast<size_t>(bytes)) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("emulated cudaMalloc of ", bytes, " bytes"));
  }
  std::memset(p, 0xff, static_cast<size_t>(bytes));
  return p;
}
void Free(void* p) { std::free(p); }
absl::StatusOr<void*> MallocHost(int64_t bytes) { return Malloc(bytes); }
void FreeHost(void* p) { std::free(p); }

// cuBLAS is not emulated: the one op that is only a cuBLAS call aborts if reached.
void MatMul(CudaContext&, const MatMulArgs&) {
  DSV2_CHECK_MSG(false, "MatMul is cuBLAS, which the CUDA emulation does not run");
}

}  // namespace cuda
}  // namespace dsv2
