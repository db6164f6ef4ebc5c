// A build without CUDA (no nvcc): no CudaContext can be created, so the cuda:: twins are never
// reached; they exist so that the op dispatchers link, and abort with a clear message if a bug
// ever calls one.
#include "kernels/cast_rows.h"
#include "kernels/check.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/embedding.h"
#include "kernels/fill_random.h"
#include "kernels/latent_cache_write.h"
#include "kernels/logits_summary.h"
#include "kernels/matmul.h"
#include "kernels/mla_attention.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/routed_experts.h"
#include "kernels/router_topk.h"
#include "kernels/silu_mul.h"

namespace dsv2 {
namespace {

constexpr char kNoCuda[] =
    "this build of dsv2 has no CUDA support (nvcc was not found when it was configured)";

[[noreturn]] void Unreachable() { DSV2_CHECK_MSG(false, kNoCuda); }

}  // namespace

absl::StatusOr<CudaDeviceInfo> ProbeCudaDevice(int) {
  return absl::FailedPreconditionError(kNoCuda);
}
absl::StatusOr<std::unique_ptr<CudaContext>> CudaContext::Create(const CudaContextOptions&) {
  return absl::FailedPreconditionError(kNoCuda);
}
CudaContext::~CudaContext() = default;
absl::Status CudaContext::MakeCurrent() { Unreachable(); }
absl::Status CudaContext::Zero(void*, int64_t) { Unreachable(); }
absl::Status CudaContext::Synchronize() { Unreachable(); }
absl::Status CudaContext::CopyToDevice(void*, const void*, int64_t) { Unreachable(); }
absl::Status CudaContext::CopyToHost(void*, const void*, int64_t) { Unreachable(); }
absl::Status CudaContext::CopyOnDevice(void*, const void*, int64_t) { Unreachable(); }
absl::Status CudaContext::LastError(const char*) { Unreachable(); }

absl::StatusOr<double> MeasureCopyBandwidth(CudaContext&, int64_t) { Unreachable(); }
absl::StatusOr<std::unique_ptr<CudaGraph>> CudaGraph::Capture(
    CudaContext&, const std::function<absl::Status()>&) {
  Unreachable();
}
CudaGraph::~CudaGraph() = default;
absl::Status CudaGraph::Launch() { Unreachable(); }

namespace cuda {
absl::StatusOr<void*> Malloc(int64_t) { return absl::FailedPreconditionError(kNoCuda); }
void Free(void*) {}
absl::StatusOr<void*> MallocHost(int64_t) { return absl::FailedPreconditionError(kNoCuda); }
void FreeHost(void*) {}

void CastRows(CudaContext&, const CastRowsArgs&) { Unreachable(); }
void EmbeddingLookup(CudaContext&, const EmbeddingArgs&) { Unreachable(); }
void FillRandom(CudaContext&, const FillRandomArgs&) { Unreachable(); }
void LatentCacheWrite(CudaContext&, const LatentCacheWriteArgs&) { Unreachable(); }
void LogitsSummary(CudaContext&, const LogitsSummaryArgs&) { Unreachable(); }
void MatMul(CudaContext&, const MatMulArgs&) { Unreachable(); }
void MlaAttention(CudaContext&, const MlaAttentionArgs&) { Unreachable(); }
void RmsNorm(CudaContext&, const RmsNormArgs&) { Unreachable(); }
void ApplyRope(CudaContext&, const RopeArgs&) { Unreachable(); }
void RoutedExperts(CudaContext&, const RoutedExpertsArgs&) { Unreachable(); }
void RouterTopK(CudaContext&, const RouterTopKArgs&) { Unreachable(); }
void SiluMul(CudaContext&, const SiluMulArgs&) { Unreachable(); }
}  // namespace cuda

}  // namespace dsv2
