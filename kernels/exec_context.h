// ExecContext: where an op runs. Either the CPU (a thread pool and an instruction set) or one
// CUDA stream with its cuBLAS handle; both carry the activation dtype of the run and a
// workspace for one step's temporaries. Ops take `const ExecContext&` and dispatch once inside
// kernels/ to their cpu:: or cuda:: twin; model code never names a device.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/cpu_context.h"
#include "kernels/dtype.h"
#include "kernels/workspace.h"

namespace dsv2 {

class CudaContext;  // kernels/cuda/cuda_context.h
class OpProfile;    // kernels/op_profile.h

class ExecContext {
 public:
  // The CPU, in the CpuContext's activation dtype. Implicit, so that CPU callers pass their
  // CpuContext as is.
  ExecContext(const CpuContext& cpu);  // NOLINT(google-explicit-constructor)
  // A CUDA stream; activation dtype and workspace are the CudaContext's.
  explicit ExecContext(CudaContext& cuda);
  // A CUDA stream with a workspace of the caller's (CUDA graphs keep theirs apart: a captured
  // graph holds its temporaries' addresses).
  ExecContext(CudaContext& cuda, Workspace& workspace);
  ~ExecContext();
  ExecContext(const ExecContext&) = delete;
  ExecContext& operator=(const ExecContext&) = delete;

  Device device() const { return cuda_ != nullptr ? Device::kCuda : Device::kCpu; }
  bool on_cuda() const { return cuda_ != nullptr; }
  const CpuContext& cpu() const;  // checks device() == kCpu
  CudaContext& cuda() const;      // checks device() == kCuda
  DType act_dtype() const { return act_dtype_; }
  // Temporaries of the current step (reset by the model at the start of each Forward).
  Workspace& workspace() const;
  // Where ProfileScopes add their times (model_bench --profile); null: profiling is off.
  OpProfile* profile() const { return profile_; }
  void set_profile(OpProfile* profile) { profile_ = profile; }

 private:
  const CpuContext* cpu_ = nullptr;
  CudaContext* cuda_ = nullptr;
  DType act_dtype_ = DType::kF32;
  Workspace* workspace_ = nullptr;  // set: the caller's
  OpProfile* profile_ = nullptr;
  mutable std::unique_ptr<Workspace> own_workspace_;  // CPU: created on first use
};

}  // namespace dsv2
