#include "kernels/exec_context.h"

#include "kernels/check.h"
#include "kernels/cuda/cuda_context.h"

namespace dsv2 {

ExecContext::ExecContext(const CpuContext& cpu) : cpu_(&cpu), act_dtype_(cpu.act_dtype()) {}

ExecContext::ExecContext(CudaContext& cuda) : cuda_(&cuda), act_dtype_(cuda.act_dtype()) {}

ExecContext::ExecContext(CudaContext& cuda, Workspace& workspace)
    : cuda_(&cuda), act_dtype_(cuda.act_dtype()), workspace_(&workspace) {
  DSV2_CHECK(workspace.device() == Device::kCuda);
}

ExecContext::~ExecContext() = default;

const CpuContext& ExecContext::cpu() const {
  DSV2_CHECK_MSG(cpu_ != nullptr, "ExecContext: a CPU op was given a CUDA context");
  return *cpu_;
}

CudaContext& ExecContext::cuda() const {
  DSV2_CHECK_MSG(cuda_ != nullptr, "ExecContext: a CUDA op was given a CPU context");
  return *cuda_;
}

Workspace& ExecContext::workspace() const {
  if (workspace_ != nullptr) return *workspace_;
  if (cuda_ != nullptr) return cuda_->workspace();
  if (!own_workspace_) own_workspace_ = std::make_unique<Workspace>(Device::kCpu);
  return *own_workspace_;
}

}  // namespace dsv2
