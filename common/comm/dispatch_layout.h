// The dispatch layout of one MoE layer (DeepEP's get_dispatch_layout): from the router's top-k,
// which tokens cross to which rank, carrying which of their (expert id, weight) slots. A token
// crosses to a rank once, however many of that rank's experts it selected.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/comm/expert_placement.h"

namespace dsv2 {

class DispatchLayout {
 public:
  // expert, weight: [n_tokens, top_k] (RouterSelection::expert / ::weight). Every expert id must
  // lie in [0, placement.n_experts()).
  static absl::StatusOr<DispatchLayout> Compute(const ExpertPlacement& placement,
                                                const int32_t* expert, const float* weight,
                                                int64_t n_tokens, int64_t top_k);

  int world_size() const { return static_cast<int>(ranks_.size()); }
  int64_t n_tokens() const { return n_tokens_; }
  int64_t top_k() const { return top_k_; }

  // Token indices sent to `rank`, ascending: [m] with m = tokens_per_rank()[rank].
  const std::vector<int64_t>& tokens(int rank) const { return ranks_[rank].tokens; }
  // [m, top_k]: slot j of sent token i keeps the token's slot j when that expert lives on
  // `rank`; other slots are -1 (expert) and 0 (weight).
  const std::vector<int32_t>& expert(int rank) const { return ranks_[rank].expert; }
  const std::vector<float>& weight(int rank) const { return ranks_[rank].weight; }

  const std::vector<int64_t>& tokens_per_rank() const { return tokens_per_rank_; }  // [world]
  const std::vector<int64_t>& tokens_per_expert() const {  // [n_experts], counts (token, slot)
    return tokens_per_expert_;
  }
  // Activation bytes that cross the wire: rows sent to the worker ranks (>= 1), i.e.
  // sum over r >= 1 of tokens_per_rank[r] * hidden * bytes_per_value. Rank 0's rows stay local.
  int64_t bytes_dispatched(int64_t hidden, int64_t bytes_per_value) const;
  // The dedupe bound: sum over tokens of the number of distinct ranks among its top-k experts.
  // No dispatch moves more rows than this (sum over all ranks, rank 0 included).
  int64_t dedupe_bound() const { return dedupe_bound_; }

 private:
  struct PerRank {
    std::vector<int64_t> tokens;  // [m]
    std::vector<int32_t> expert;  // [m, top_k]
    std::vector<float> weight;    // [m, top_k]
  };
  DispatchLayout() = default;

  int64_t n_tokens_ = 0;
  int64_t top_k_ = 0;
  int64_t dedupe_bound_ = 0;
  std::vector<PerRank> ranks_;  // [world]
  std::vector<int64_t> tokens_per_rank_;
  std::vector<int64_t> tokens_per_expert_;
};

}  // namespace dsv2
