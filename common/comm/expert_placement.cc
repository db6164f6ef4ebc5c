#include "common/comm/expert_placement.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace dsv2 {

absl::StatusOr<ExpertPlacement> ExpertPlacement::Contiguous(int64_t n_experts, int world_size,
                                                            bool coordinator_hosts_experts) {
  if (n_experts < 1) {
    return absl::InvalidArgumentError(absl::StrCat("n_experts must be >= 1, got ", n_experts));
  }
  if (world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world_size must be >= 1, got ", world_size));
  }
  const int first_host = coordinator_hosts_experts ? 0 : 1;
  const int64_t hosts = world_size - first_host;
  if (hosts == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size 1 without the coordinator hosting experts leaves no rank for the ",
                     n_experts, " experts"));
  }
  if (hosts > n_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("more expert-hosting ranks (", hosts, ") than experts (", n_experts,
                     "): every hosting rank needs at least one expert; use fewer workers"));
  }
  std::vector<int64_t> boundaries(world_size + 1, 0);
  const int64_t base = n_experts / hosts, extra = n_experts % hosts;
  for (int r = 0; r < world_size; ++r) {
    const int64_t i = r - first_host;  // index among the hosting ranks
    const int64_t size = i < 0 ? 0 : base + (i < extra ? 1 : 0);
    boundaries[r + 1] = boundaries[r] + size;
  }
  return ExpertPlacement(std::move(boundaries));
}

absl::StatusOr<ExpertPlacement> ExpertPlacement::FromBoundaries(std::vector<int64_t> boundaries) {
  if (boundaries.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert boundaries need world_size + 1 >= 2 entries, got ", boundaries.size()));
  }
  if (boundaries.front() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert boundaries must start at 0, got ", boundaries.front()));
  }
  for (size_t r = 0; r + 1 < boundaries.size(); ++r) {
    if (boundaries[r + 1] < boundaries[r]) {
      return absl::InvalidArgumentError(absl::StrCat("expert boundaries decrease at rank ", r, ": ",
                                                     boundaries[r], " > ", boundaries[r + 1]));
    }
  }
  if (boundaries.back() < 1) return absl::InvalidArgumentError("expert boundaries hold no expert");
  return ExpertPlacement(std::move(boundaries));
}

int ExpertPlacement::RankOf(int64_t expert) const {
  if (expert < 0 || expert >= n_experts()) return -1;
  // The last rank whose begin is <= expert; empty ranges share a begin with the next rank.
  const auto it = std::upper_bound(boundaries_.begin(), boundaries_.end(), expert);
  return static_cast<int>(it - boundaries_.begin()) - 1;
}

ExpertRange ExpertPlacement::Range(int rank) const {
  DSV2_CHECK(rank >= 0 && rank < world_size());
  return {boundaries_[rank], boundaries_[rank + 1]};
}

}  // namespace dsv2
