#include "coordinator/model/device_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu_context.h"

ABSL_FLAG(std::string, device, "auto",
          "Where the model runs: auto (a CUDA GPU when one is usable, else the CPU), cuda, or "
          "cpu.");
ABSL_FLAG(std::string, dtype, "auto",
          "Activation precision: auto (bfloat16 on a GPU, float32 on the CPU), bfloat16 (on the "
          "CPU: activations and the KV cache rounded to bf16 where the GPU rounds them, weights "
          "read as stored), or float32 (on a GPU: weights widened once, true fp32 GEMMs; the "
          "verification mode).");
ABSL_FLAG(int, gpu, 0, "CUDA device index for --device cuda/auto.");

namespace dsv2 {

absl::StatusOr<ModelPlacement> PlacementFromFlags() {
  const std::string device = absl::GetFlag(FLAGS_device);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  ModelPlacement p;
  p.cuda_device = absl::GetFlag(FLAGS_gpu);
  if (device == "cuda" || device == "auto") {
    absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(p.cuda_device);
    if (info.ok()) {
      p.device = Device::kCuda;
    } else if (device == "cuda") {
      return absl::FailedPreconditionError(
          absl::StrCat("--device cuda: ", info.status().message()));
    }
  } else if (device != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device: '", device, "' is not one of auto, cuda, cpu"));
  }
  if (dtype == "auto") {
    p.dtype = p.device == Device::kCuda ? DType::kBF16 : DType::kF32;
  } else if (dtype == "float32" || dtype == "fp32") {
    p.dtype = DType::kF32;
  } else if (dtype == "bfloat16" || dtype == "bf16") {
    p.dtype = DType::kBF16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype: '", dtype, "' is not one of auto, bfloat16, float32"));
  }
  return p;
}

std::string DescribePlacement(const DeepseekV2Model& model) {
  const char* dtype = PrecisionName(model.dtype());
  if (const CudaContext* cuda = model.cuda_context()) {
    return absl::StrCat("cuda:", cuda->info().device, " (", cuda->info().name, ", ", dtype, ")");
  }
  return absl::StrCat("cpu (", CpuIsaName(DetectCpuIsa()), ", ", dtype, ")");
}

}  // namespace dsv2
