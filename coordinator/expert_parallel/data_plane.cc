#include "coordinator/expert_parallel/data_plane.h"

#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

std::string RankName(size_t r) {
  return r == 0 ? "the coordinator (rank 0)" : absl::StrCat("worker rank ", r);
}

// Why rank r cannot join an NCCL group with ranks [0, r); OK when it can.
absl::Status NcclBlocker(const std::vector<RankDevice>& ranks, size_t r) {
  const RankDevice& d = ranks[r];
  if (!d.gpu) return absl::FailedPreconditionError(absl::StrCat(RankName(r), " is on the CPU"));
  if (!d.nccl_built) {
    return absl::FailedPreconditionError(absl::StrCat(RankName(r), " was built without NCCL"));
  }
  for (size_t q = 0; q < r; ++q) {
    if (ranks[q].gpu_uuid == d.gpu_uuid) {
      return absl::FailedPreconditionError(absl::StrCat(RankName(r), " shares its GPU (",
                                                        d.gpu_uuid, ") with ", RankName(q),
                                                        "; NCCL needs one GPU per rank"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* DataPlaneName(DataPlane p) { return p == DataPlane::kNccl ? "nccl" : "tcp"; }

absl::StatusOr<DataPlane> ChooseDataPlane(std::string_view requested,
                                          const std::vector<RankDevice>& ranks) {
  if (requested == "tcp") return DataPlane::kTcp;
  if (requested != "auto" && requested != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("--transport '", std::string(requested), "': expected auto, tcp or nccl"));
  }
  for (size_t r = 0; r < ranks.size(); ++r) {
    if (absl::Status blocked = NcclBlocker(ranks, r); !blocked.ok()) {
      if (requested == "auto") return DataPlane::kTcp;
      return absl::FailedPreconditionError(
          absl::StrCat("--transport nccl: ", blocked.message(), " (use --transport tcp or auto)"));
    }
  }
  return ranks.size() >= 2 ? DataPlane::kNccl : DataPlane::kTcp;
}

}  // namespace dsv2
