// The device flags every program that runs the model shares (dsv2-coordinator, dsv2-generate,
// model_bench): --device auto|cuda|cpu, --dtype, --gpu. Linking this file defines them.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "coordinator/model/deepseek_v2_model.h"

ABSL_DECLARE_FLAG(std::string, device);

namespace dsv2 {

// The placement the flags ask for. auto: CUDA when a usable device is visible, else the CPU.
// --device cuda without a usable GPU: FAILED_PRECONDITION with one line saying why (no driver,
// no device, compute capability below 8.0, a build without CUDA).
absl::StatusOr<ModelPlacement> PlacementFromFlags();

// "cuda:0 (NVIDIA H200, bfloat16)" or "cpu (avx512, float32)".
std::string DescribePlacement(const DeepseekV2Model& model);

}  // namespace dsv2
