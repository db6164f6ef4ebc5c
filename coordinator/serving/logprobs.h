// Log-probabilities of the model's raw next-token distribution, for the response's logprobs.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/logits_summary.h"

namespace dsv2 {

struct TokenLogprob {
  int32_t id;
  float logprob;
};

// log_softmax(raw_logits) — the RAW model logits, before penalties and temperature — with the
// normaliser computed in double from the maximum (stable for any finite range).
// chosen_out (may be null): {chosen, logprob of chosen}; chosen must be in [0, vocab).
// top_out (may be null): cleared, then the min(top_n, vocab) most likely tokens, most likely
// first, ties to the lower id; top_n <= 0 leaves it empty.
// NaN logits count as -inf. When some logits are +inf they share all of the mass equally.
void ComputeLogprobs(const float* raw_logits, int64_t vocab, int32_t chosen, int32_t top_n,
                     TokenLogprob* chosen_out, std::vector<TokenLogprob>* top_out);

// The same from a LogitsSummaryRow of the raw logits (kernels/logits_summary.h), for the
// argmax token: chosen must be summary.argmax; top_n <= summary.top_n.
void SummaryLogprobs(const LogitsSummaryRow& summary, int32_t chosen, int32_t top_n,
                     TokenLogprob* chosen_out, std::vector<TokenLogprob>* top_out);

}  // namespace dsv2
