// CudaContext and the device probe: host code against the CUDA runtime and cuBLAS (never the
// driver API, so binaries load on machines without a driver).
#include "kernels/cuda/cuda_context.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsv2 {
namespace {

absl::Status CudaError(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

}  // namespace

absl::StatusOr<CudaDeviceInfo> ProbeCudaDevice(int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) {
    cudaGetLastError();  // clear the sticky-free error state
    return absl::FailedPreconditionError(
        e == cudaErrorNoDevice ? "no CUDA device: the driver sees no GPU"
                               : "no CUDA device: no NVIDIA driver is loaded on this machine");
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device: cudaGetDeviceCount failed with ", cudaGetErrorName(e)));
  }
  if (count == 0) return absl::FailedPreconditionError("no CUDA device: the driver sees no GPU");
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " visible)"));
  }
  cudaDeviceProp prop;
  if (absl::Status s = CudaError(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
      !s.ok()) {
    return absl::FailedPreconditionError(s.message());
  }
  CudaDeviceInfo info;
  info.device = device;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.total_memory = static_cast<int64_t>(prop.totalGlobalMem);
  info.sm_count = prop.multiProcessorCount;
  for (int i = 0; i < 16; ++i) {
    absl::StrAppendFormat(&info.uuid, "%02x", static_cast<unsigned char>(prop.uuid.bytes[i]));
  }
  if (prop.major < 8) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "CUDA device %d (%s) has compute capability %d.%d; dsv2 needs 8.0 or newer (Ampere)",
        device, info.name, prop.major, prop.minor));
  }
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(device) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    info.free_memory = static_cast<int64_t>(free_b);
  }
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
  if (absl::Status s = CudaError(cudaSetDevice(o.device), "cudaSetDevice"); !s.ok()) return s;
  cudaStream_t stream = nullptr;
  if (absl::Status s =
          CudaError(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  c->stream_ = stream;
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError("cublasCreate failed (is libcublas the toolkit's version?)");
  }
  c->cublas_ = handle;
  cublasSetStream(handle, stream);
  // float32 runs are the verification mode: true fp32, never TF32 tensor cores.
  cublasSetMathMode(handle,
                    o.act_dtype == DType::kF32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH);
  c->workspace_ = std::make_unique<Workspace>(Device::kCuda, o.workspace_bytes);
  constexpr int64_t kCublasWorkspace = 32 << 20;
  absl::StatusOr<DeviceBuffer> cublas_ws = DeviceBuffer::Allocate(Device::kCuda, kCublasWorkspace);
  if (!cublas_ws.ok()) return cublas_ws.status();
  c->cublas_workspace_ = *std::move(cublas_ws);
  if (cublasSetWorkspace(handle, c->cublas_workspace_.data(), kCublasWorkspace) !=
      CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError("cublasSetWorkspace failed");
  }
  return c;
}

CudaContext::~CudaContext() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  workspace_.reset();
  cublas_workspace_ = DeviceBuffer();
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status CudaContext::MakeCurrent() {
  return CudaError(cudaSetDevice(info_.device), "cudaSetDevice");
}

absl::Status CudaContext::Zero(void* dst, int64_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return CudaError(cudaMemsetAsync(dst, 0, bytes, stream_), "cudaMemsetAsync");
}

absl::Status CudaContext::Synchronize() {
  return CudaError(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

absl::Status CudaContext::CopyToDevice(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return CudaError(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
                   "cudaMemcpyAsync (to device)");
}

absl::Status CudaContext::CopyToHost(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return CudaError(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
                   "cudaMemcpyAsync (to host)");
}

absl::Status CudaContext::CopyOnDevice(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return CudaError(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                   "cudaMemcpyAsync (on device)");
}

absl::Status CudaContext::LastError(const char* what) {
  return CudaError(cudaGetLastError(), what);
}

absl::StatusOr<std::unique_ptr<CudaGraph>> CudaGraph::Capture(
    CudaContext& ctx, const std::function<absl::Status()>& body) {
  cudaStream_t stream = ctx.stream();
  if (absl::Status s = CudaError(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                                 "cudaStreamBeginCapture");
      !s.ok()) {
    return s;
  }
  const absl::Status body_status = body();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);  // always end the capture
  if (!body_status.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return body_status;
  }
  if (absl::Status s = CudaError(end, "cudaStreamEndCapture"); !s.ok()) return s;
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (absl::Status s = CudaError(inst, "cudaGraphInstantiate"); !s.ok()) return s;
  std::unique_ptr<CudaGraph> g(new CudaGraph());
  g->ctx_ = &ctx;
  g->exec_ = exec;
  return g;
}

CudaGraph::~CudaGraph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

absl::Status CudaGraph::Launch() {
  return CudaError(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), ctx_->stream()),
                   "cudaGraphLaunch");
}

absl::StatusOr<double> MeasureCopyBandwidth(CudaContext& ctx, int64_t bytes) {
  absl::StatusOr<DeviceBuffer> src = DeviceBuffer::Allocate(Device::kCuda, bytes);
  if (!src.ok()) return src.status();
  absl::StatusOr<DeviceBuffer> dst = DeviceBuffer::Allocate(Device::kCuda, bytes);
  if (!dst.ok()) return dst.status();
  cudaStream_t stream = ctx.stream();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  // One copy warms up; the next three are timed.
  cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice, stream);
  cudaEventRecord(start, stream);
  for (int i = 0; i < 3; ++i) {
    cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice, stream);
  }
  cudaEventRecord(stop, stream);
  const absl::Status s = CudaError(cudaEventSynchronize(stop), "bandwidth copy");
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!s.ok()) return s;
  return 3.0 * 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

namespace cuda {

absl::StatusOr<void*> Malloc(int64_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(bytes));
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(e)));
  }
  return p;
}

void Free(void* p) { cudaFree(p); }

absl::StatusOr<void*> MallocHost(int64_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMallocHost(&p, static_cast<size_t>(bytes));
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cudaMallocHost of ", bytes, " bytes failed: ", cudaGetErrorString(e)));
  }
  return p;
}

void FreeHost(void* p) { cudaFreeHost(p); }

}  // namespace cuda
}  // namespace dsv2
