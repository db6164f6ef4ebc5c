// model_bench --profile: the time of each part of a CPU decode step and of a prefill, summed over
// layers (kernels/op_profile.h), beside the weight bytes each part reads and the rate that makes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

struct ProfileRunArgs {
  int batch = 1;           // sequences decoding together
  int decode_tokens = 32;  // steps profiled (after the prompt; the first is not counted)
  int64_t context = 16;    // decode depth: each sequence's prompt length
  std::vector<int64_t> prefill_tokens = {512};  // one prefill profiled per length
  std::string json;                             // also write the tables here, when set
};

// Prints markdown tables (the decode step, then each prefill) on stdout.
absl::Status RunProfile(const DeepseekV2Model& model, const CpuContext& cpu,
                        const ProfileRunArgs& args);

}  // namespace dsv2
