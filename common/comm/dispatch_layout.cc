#include "common/comm/dispatch_layout.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dsv2 {

absl::StatusOr<DispatchLayout> DispatchLayout::Compute(const ExpertPlacement& placement,
                                                       const int32_t* expert, const float* weight,
                                                       int64_t n_tokens, int64_t top_k) {
  if (n_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("n_tokens must be >= 0, got ", n_tokens));
  }
  if (top_k < 1) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 1, got ", top_k));
  if (n_tokens > 0 && (expert == nullptr || weight == nullptr)) {
    return absl::InvalidArgumentError("expert ids and weights must be non-null when n_tokens > 0");
  }
  const int world = placement.world_size();
  DispatchLayout layout;
  layout.n_tokens_ = n_tokens;
  layout.top_k_ = top_k;
  layout.ranks_.resize(world);
  layout.tokens_per_rank_.assign(world, 0);
  layout.tokens_per_expert_.assign(placement.n_experts(), 0);

  // last_token[r]: the last token appended to rank r, so that a token's second slot on the same
  // rank fills the row its first slot opened instead of sending the token again.
  std::vector<int64_t> last_token(world, -1);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < top_k; ++j) {
      const int32_t e = expert[t * top_k + j];
      const int r = placement.RankOf(e);
      if (r < 0) {
        return absl::InvalidArgumentError(absl::StrCat("expert id ", e, " of token ", t, " slot ",
                                                       j, " is outside [0, ", placement.n_experts(),
                                                       ")"));
      }
      PerRank& pr = layout.ranks_[r];
      if (last_token[r] != t) {  // the token's first slot on r: open its row
        last_token[r] = t;
        pr.tokens.push_back(t);
        pr.expert.resize(pr.expert.size() + top_k, -1);
        pr.weight.resize(pr.weight.size() + top_k, 0.0f);
        ++layout.dedupe_bound_;
      }
      const size_t row = pr.tokens.size() - 1;
      pr.expert[row * top_k + j] = e;
      pr.weight[row * top_k + j] = weight[t * top_k + j];
      ++layout.tokens_per_expert_[e];
    }
  }
  for (int r = 0; r < world; ++r) {
    layout.tokens_per_rank_[r] = static_cast<int64_t>(layout.ranks_[r].tokens.size());
  }
  return layout;
}

int64_t DispatchLayout::bytes_dispatched(int64_t hidden, int64_t bytes_per_value) const {
  int64_t rows = 0;
  for (int r = 1; r < world_size(); ++r) rows += tokens_per_rank_[r];
  return rows * hidden * bytes_per_value;
}

}  // namespace dsv2
