// Next-token sampling for one sequence: penalties, temperature, top-k, top-p, min-p, and a seeded
// draw that is reproducible across platforms (the RNG and the draw are written here; no <random>
// distributions, whose output is implementation-defined).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"

namespace dsv2 {

// Mirrors dsv2.v1.SamplingParams after defaults are applied by the caller.
struct SamplingOptions {
  float temperature = 1.0f;         // 0 = greedy argmax
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // > 0; 1 = off (0 in the proto is mapped to 1 by the caller)
  float frequency_penalty = 0.0f;   // [-2, 2]
  float presence_penalty = 0.0f;    // [-2, 2]
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the field with the proto's spelling, e.g.
// "sampling.top_p must be in (0, 1], got 1.5". NaN and infinities are rejected everywhere.
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

// xoshiro256** (Blackman & Vigna) seeded through splitmix64: same seed, same stream, on every
// platform.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    // splitmix64 expands the seed; it never yields the all-zero state xoshiro must avoid.
    for (uint64_t& s : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      s = z ^ (z >> 31);
    }
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) from the top 53 bits.
  double NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Per-sequence sampler: owns the RNG and the token counts the penalties need.
// Options must have passed ValidateSamplingOptions (checked again here; a bad one aborts).
class Sampler {
 public:
  // prompt_tokens feed the repetition penalty only. Ids outside [0, vocab_size) are ignored.
  Sampler(const SamplingOptions& options, int64_t vocab_size,
          const std::vector<int32_t>& prompt_tokens);

  // logits: [vocab_size] raw float32 logits of the next position; used as scratch (penalised and
  // scaled in place). Applies, in this order: repetition penalty (prompt + generated tokens:
  // logit > 0 ? logit / p : logit * p), frequency and presence penalties (generated tokens only),
  // temperature (0: argmax of the penalised logits, ties to the lowest id, no RNG draw), top-k,
  // top-p (over the top-k survivors, renormalised), min-p (against the most likely token after
  // temperature), then one draw: a single uniform double u, and the first kept token, in id
  // order, at which the running sum of exp(logit - max) exceeds u times their total.
  // The kept set is always a prefix of the order (logit descending, id ascending). NaN logits
  // are never chosen; a +inf logit wins outright (lowest such id). Costs O(vocab), no full sort.
  // Scratch memory is per thread (up to ~2.5 MB for 100k tokens): Samplers of different
  // sequences may run on different threads at once; one Sampler is not thread-safe.
  int32_t Sample(float* logits);

  // Records the token that was actually appended (updates the penalty counts).
  // Ids outside [0, vocab_size) are ignored.
  void Accept(int32_t token);

  const SamplingOptions& options() const { return options_; }
  // Sample() is the argmax of the raw logits (temperature 0, no penalty): a LogitsSummaryRow
  // of the row is all it needs.
  bool GreedyWithoutPenalties() const {
    return options_.temperature == 0.0f && options_.repetition_penalty == 1.0f &&
           options_.frequency_penalty == 0.0f && options_.presence_penalty == 0.0f;
  }
  int64_t vocab_size() const { return vocab_size_; }

 private:
  void ApplyPenalties(float* logits) const;
  void MarkSeen(int32_t token);

  SamplingOptions options_;
  int64_t vocab_size_;
  Xoshiro256 rng_;
  std::vector<uint64_t> seen_bits_;              // prompt + generated, one bit per id
  std::vector<int32_t> seen_;                    // the same set, as a list
  std::unordered_map<int32_t, int32_t> counts_;  // generated tokens only
};

}  // namespace dsv2
