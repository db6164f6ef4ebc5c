// CudaContext: one CUDA device, one stream on it, a cuBLAS handle bound to that stream, the
// activation dtype of the run and a device workspace. It is what ExecContext carries on a GPU.
// This header has no CUDA includes, so CPU-only code can hold a CudaContext; a build without
// CUDA links kernels/cuda_unavailable.cc, whose Create() answers FAILED_PRECONDITION.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/workspace.h"

struct CUstream_st;    // cudaStream_t is CUstream_st*
struct cublasContext;  // cublasHandle_t is cublasContext*

namespace dsv2 {

struct CudaDeviceInfo {
  int device = 0;
  std::string name;
  int cc_major = 0;
  int cc_minor = 0;
  int64_t total_memory = 0;  // bytes
  int64_t free_memory = 0;   // bytes, when probed
  int sm_count = 0;
  std::string uuid;  // 32 hex digits, unique across machines: tells two ranks' GPUs apart
};

// The device `device` if it is usable: FAILED_PRECONDITION with one line saying why not (no
// driver, no device, compute capability below 8.0, or a build without CUDA).
absl::StatusOr<CudaDeviceInfo> ProbeCudaDevice(int device = 0);

struct CudaContextOptions {
  int device = 0;
  DType act_dtype = DType::kBF16;      // kBF16 (fast) or kF32 (verification: true fp32 GEMMs)
  int64_t workspace_bytes = 64 << 20;  // first workspace block; grows to the high-water mark
};

class CudaContext {
 public:
  static absl::StatusOr<std::unique_ptr<CudaContext>> Create(const CudaContextOptions& options);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  const CudaDeviceInfo& info() const { return info_; }
  DType act_dtype() const { return act_dtype_; }
  CUstream_st* stream() const { return stream_; }
  cublasContext* cublas() const { return cublas_; }
  Workspace& workspace() { return *workspace_; }

  // Makes this context's device the calling thread's current one (the CUDA runtime's current
  // device is per thread): every thread that launches work or allocates for this context calls
  // it once before its first use (Create does it for the creating thread).
  absl::Status MakeCurrent();
  // Waits for the stream; a kernel fault surfaces here as INTERNAL naming the CUDA error.
  absl::Status Synchronize();
  // Stream-ordered: `bytes` zero bytes at dst (device memory).
  absl::Status Zero(void* dst, int64_t bytes);
  // Stream-ordered copies (host memory should be pinned for the copy to be asynchronous).
  absl::Status CopyToDevice(void* dst, const void* src, int64_t bytes);
  absl::Status CopyToHost(void* dst, const void* src, int64_t bytes);
  absl::Status CopyOnDevice(void* dst, const void* src, int64_t bytes);  // device to device
  // The error of the last launch, if any (checked after each op in debug builds and by tests).
  absl::Status LastError(const char* what);

 private:
  CudaContext() = default;
  CudaDeviceInfo info_;
  DType act_dtype_ = DType::kBF16;
  CUstream_st* stream_ = nullptr;
  cublasContext* cublas_ = nullptr;
  std::unique_ptr<Workspace> workspace_;
  DeviceBuffer cublas_workspace_;  // fixed, so cuBLAS never allocates inside a graph capture
};

// A CUDA graph captured from a stream: `body` issues work on ctx's stream (no synchronisation,
// no allocation outside workspaces sized beforehand); Launch() replays it on that stream.
class CudaGraph {
 public:
  static absl::StatusOr<std::unique_ptr<CudaGraph>> Capture(
      CudaContext& ctx, const std::function<absl::Status()>& body);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  absl::Status Launch();

 private:
  CudaGraph() = default;
  CudaContext* ctx_ = nullptr;
  void* exec_ = nullptr;  // cudaGraphExec_t
};

// Device memory bandwidth: a device-to-device copy of `bytes`, counted as bytes read + bytes
// written, in GB/s (the HBM roofline a bandwidth-bound kernel can reach).
absl::StatusOr<double> MeasureCopyBandwidth(CudaContext& ctx, int64_t bytes);

namespace cuda {
// Device memory for DeviceBuffer (cudaMalloc / cudaFree on the current device).
absl::StatusOr<void*> Malloc(int64_t bytes);
void Free(void* p);
// Pinned host memory for staging uploads and step metadata.
absl::StatusOr<void*> MallocHost(int64_t bytes);
void FreeHost(void* p);
}  // namespace cuda

}  // namespace dsv2
