// Which rank hosts which routed experts: contiguous ranges, rank 0 (the coordinator) first.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv2 {

// Experts [begin, end) of one rank; empty for a rank that hosts none.
struct ExpertRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t expert) const { return expert >= begin && expert < end; }
};

class ExpertPlacement {
 public:
  // Splits n_experts into contiguous shards over the hosting ranks: ranks 1..world_size-1, plus
  // rank 0 when coordinator_hosts_experts. When the hosting ranks do not divide n_experts, the
  // first ones get one expert more (10 over 3 ranks: 4, 3, 3).
  static absl::StatusOr<ExpertPlacement> Contiguous(int64_t n_experts, int world_size,
                                                    bool coordinator_hosts_experts);
  // Explicit shards: rank r hosts [boundaries[r], boundaries[r + 1]). boundaries has
  // world_size + 1 non-decreasing entries, from 0 to n_experts.
  static absl::StatusOr<ExpertPlacement> FromBoundaries(std::vector<int64_t> boundaries);

  int world_size() const { return static_cast<int>(boundaries_.size()) - 1; }
  int64_t n_experts() const { return boundaries_.back(); }
  bool coordinator_hosts_experts() const { return Range(0).size() > 0; }

  // The rank hosting `expert`, or -1 when expert is outside [0, n_experts).
  int RankOf(int64_t expert) const;
  // Experts of `rank` (0 <= rank < world_size, checked).
  ExpertRange Range(int rank) const;

 private:
  explicit ExpertPlacement(std::vector<int64_t> boundaries) : boundaries_(std::move(boundaries)) {}
  std::vector<int64_t> boundaries_;  // [world_size + 1]
};

}  // namespace dsv2
