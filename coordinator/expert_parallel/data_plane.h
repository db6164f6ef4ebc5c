// Which data plane an expert-parallel group uses (dsv2-coordinator --transport auto|tcp|nccl).
// NCCL carries the activations between GPUs directly, but needs every rank — the coordinator
// and each worker — on a GPU of its own and built with NCCL; TCP works between any ranks (GPU
// rows are staged through pinned host buffers), including several ranks sharing one GPU.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv2 {

enum class DataPlane { kTcp, kNccl };
const char* DataPlaneName(DataPlane p);  // "tcp", "nccl"

// What one rank reported about itself (rank 0: the coordinator; then the workers' Configure
// answers).
struct RankDevice {
  bool gpu = false;
  std::string gpu_uuid;  // with a GPU: unique across machines
  bool nccl_built = false;
};

// requested "tcp": TCP. "nccl": NCCL, or FAILED_PRECONDITION naming the first rank that cannot
// take part (on the CPU, built without NCCL, or on the same GPU as an earlier rank). "auto":
// NCCL when every rank could take part, else TCP. Anything else: INVALID_ARGUMENT.
absl::StatusOr<DataPlane> ChooseDataPlane(std::string_view requested,
                                          const std::vector<RankDevice>& ranks);

}  // namespace dsv2
