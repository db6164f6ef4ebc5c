#include "coordinator/model/device_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/model/quantize_weights.h"
#include "kernels/cpu_context.h"

ABSL_FLAG(std::string, device, "auto",
          "Where the model runs: auto (a CUDA GPU when one is usable, else the CPU), cuda, or "
          "cpu.");
ABSL_FLAG(std::string, dtype, "auto",
          "Activation precision: auto, bfloat16, or float32 (the verification mode: on a GPU "
          "weights widened once and true fp32 GEMMs). auto picks bfloat16 on a GPU, and on a CPU "
          "with AVX512_BF16, where the bf16 dot product (vdpbf16ps) measured 1.1-1.2x float32's "
          "decode and 1.5x its prefill; float32 on other CPUs, where bf16 activations only add "
          "conversions (same decode speed, 5-10% slower prefill, measured with "
          "DSV2_CPU_ISA=avx512 and avx2). bfloat16 on the CPU rounds activations and the KV cache "
          "where the GPU rounds them and reads the weights as stored.");
ABSL_FLAG(int, gpu, 0, "CUDA device index for --device cuda/auto.");
ABSL_FLAG(
    std::string, quantize, "none",
    "Quantize the checkpoint's weights at load: none, q8_0 (8.5 bits a weight), q4_k_m "
    "(~4.8: Q4_K, Q6_K for lm_head and some layers' down projections), or one format for "
    "every matrix: q4_k, q5_k, q6_k, q4_0, q5_0, iq4_nl. The embedding, router, norms and "
    "W_UK/W_UV (kv_b_proj) stay as stored. The CPU then runs integer dot products on activations "
    "quantized per 32 to int8 (AVX-512 VNNI, AVX2, or scalar); a GPU widens the quantized "
    "weights back to the activation dtype at upload.");

namespace dsv2 {

absl::StatusOr<ModelPlacement> PlacementFromFlags() {
  const std::string device = absl::GetFlag(FLAGS_device);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  ModelPlacement p;
  p.cuda_device = absl::GetFlag(FLAGS_gpu);
  DSV2_ASSIGN_OR_RETURN(p.quantize, QuantScheme::Parse(absl::GetFlag(FLAGS_quantize)));
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
    const bool bf16_dot = DetectCpuIsa() >= CpuIsa::kAvx512Bf16;
    p.dtype = p.device == Device::kCuda || bf16_dot ? DType::kBF16 : DType::kF32;
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
  const bool quantized = model.quantize().enabled();
  const std::string weights = quantized ? absl::StrCat(", weights ", model.quantize().name()) : "";
  if (const CudaContext* cuda = model.cuda_context()) {
    return absl::StrCat("cuda:", cuda->info().device, " (", cuda->info().name, ", ", dtype, weights,
                        quantized ? " widened to the dtype" : "", ")");
  }
  return absl::StrCat("cpu (", CpuIsaName(DetectCpuIsa()), ", ", dtype, weights, ")");
}

}  // namespace dsv2
