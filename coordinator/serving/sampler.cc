#include "coordinator/serving/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "kernels/check.h"

namespace dsv2 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int32_t kLastId = std::numeric_limits<int32_t>::max();

absl::Status OutOfRange(const char* field, const char* rule, double value) {
  return absl::InvalidArgumentError(
      absl::StrFormat("sampling.%s must be %s, got %g", field, rule, value));
}

// One token under consideration; w = exp(logit - max logit).
struct Candidate {
  float logit;
  float w;
  int32_t id;
};

// The strict total order every filter cuts: higher logit first, ties to the lower id.
inline bool Before(float la, int32_t ia, float lb, int32_t ib) {
  return la > lb || (la == lb && ia < ib);
}
inline bool Before(const Candidate& a, const Candidate& b) {
  return Before(a.logit, a.id, b.logit, b.id);
}
inline bool ById(const Candidate& a, const Candidate& b) { return a.id < b.id; }

// Reused across calls on one thread, so that a sequence's sampler holds no vocab-sized buffer.
struct Scratch {
  std::vector<Candidate> candidates;  // always in ascending id order
  std::vector<Candidate> work;
  std::vector<double> bucket_mass;
  std::vector<double> block_mass;
};
Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

// Keeps the candidates `keep` accepts, in order. Branch-free: which ones stay is data-dependent
// and unpredictable, and a mispredicted branch per element would cost more than the copy.
template <typename Keep>
void KeepIf(std::vector<Candidate>& c, Keep keep) {
  size_t kept = 0;
  for (size_t j = 0; j < c.size(); ++j) {
    const Candidate x = c[j];
    c[kept] = x;
    kept += keep(x) ? 1 : 0;
  }
  c.resize(kept);
}

// The first index whose running weight exceeds u * (total weight). The sums run over fixed blocks
// (four lanes each, then the blocks in order), so they are the same everywhere and not one long
// chain of dependent additions; only the block holding the answer is walked one by one.
template <typename Weight>
int64_t DrawIndex(int64_t count, Weight weight, double u, Scratch& s) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  s.block_mass.resize(blocks);
  double total = 0.0;
  int64_t last_positive = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(count, (b + 1) * kBlock);
    double lane[4] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t j = b * kBlock; j < end; ++j) {
      const float w = weight(j);
      lane[j % 4] += w;
      last_positive = w > 0.0f ? j : last_positive;
    }
    s.block_mass[b] = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    total += s.block_mass[b];
  }
  const double r = u * total;
  double acc = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    if (acc + s.block_mass[b] <= r) {
      acc += s.block_mass[b];
      continue;
    }
    const int64_t end = std::min(count, (b + 1) * kBlock);
    for (int64_t j = b * kBlock; j < end; ++j) {
      acc += weight(j);
      if (acc > r) return j;
    }
    // Rounding left the running sum just short inside this block: go on from here.
  }
  return last_positive;
}

// Argmax ignoring NaN, ties to the lowest id; 0 when every logit is NaN.
int32_t Argmax(const float* logits, int64_t n) {
  int32_t best = -1;
  float best_logit = -kInf;
  for (int64_t i = 0; i < n; ++i) {
    const float l = logits[i];
    if (l > best_logit || (best < 0 && l == best_logit)) {
      best_logit = l;
      best = static_cast<int32_t>(i);
    }
  }
  return best < 0 ? 0 : best;
}

// Maximum ignoring NaN; eight independent lanes so that the loop is not one long dependency chain.
float MaxLogit(const float* logits, int64_t n) {
  float lane[8];
  std::fill(lane, lane + 8, -kInf);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
  }
  for (; i < n; ++i) lane[0] = logits[i] > lane[0] ? logits[i] : lane[0];
  return *std::max_element(lane, lane + 8);
}

// The k first tokens of [0, n) in the order `Before` (fewer if fewer are above -inf), in id order;
// w is left unset. Returns the k-th (the cut) when there are k.
std::optional<Candidate> SelectTopK(const float* logits, int64_t n, int64_t k, Scratch& s) {
  std::vector<Candidate>& out = s.candidates;
  out.clear();
  if (k <= 1024) {
    // A heap of the k best so far, worst on top: most tokens cost one comparison.
    int64_t i = 0;
    for (; i < n && static_cast<int64_t>(out.size()) < k; ++i) {
      if (logits[i] > -kInf) out.push_back({logits[i], 0.0f, static_cast<int32_t>(i)});
    }
    auto worse_on_top = [](const Candidate& a, const Candidate& b) { return Before(a, b); };
    std::make_heap(out.begin(), out.end(), worse_on_top);
    for (; i < n; ++i) {
      const Candidate& worst = out.front();
      if (Before(logits[i], static_cast<int32_t>(i), worst.logit, worst.id)) {
        std::pop_heap(out.begin(), out.end(), worse_on_top);
        out.back() = {logits[i], 0.0f, static_cast<int32_t>(i)};
        std::push_heap(out.begin(), out.end(), worse_on_top);
      }
    }
    if (static_cast<int64_t>(out.size()) < k) {
      std::sort(out.begin(), out.end(), ById);
      return std::nullopt;
    }
    const Candidate cut = out.front();
    std::sort(out.begin(), out.end(), ById);
    return cut;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (logits[i] > -kInf) out.push_back({logits[i], 0.0f, static_cast<int32_t>(i)});
  }
  if (static_cast<int64_t>(out.size()) <= k) return std::nullopt;
  s.work = out;
  std::nth_element(s.work.begin(), s.work.begin() + (k - 1), s.work.end(),
                   [](const Candidate& a, const Candidate& b) { return Before(a, b); });
  const Candidate cut = s.work[k - 1];
  std::erase_if(out, [&cut](const Candidate& c) { return Before(cut, c); });
  return cut;
}

// The last element of the shortest prefix (in the order `Before`) of `c` whose mass reaches
// `target`; nullopt when all of `c` falls short. `c` is in id order, so the sums (and the result)
// do not depend on the platform. Buckets by logit: everything in a bucket above the one where
// the running mass crosses the target is kept, and only that bucket is refined (by buckets again
// while it is large, then by sorting).
std::optional<Candidate> SelectNucleus(const std::vector<Candidate>& c, double target, Scratch& s) {
  constexpr int kBuckets = 1024;
  double acc = 0.0;  // mass of everything known to come before `range`
  const Candidate* range = c.data();
  size_t size = c.size();
  while (size > 256) {
    float lo = kInf;
    float hi = -kInf;
    for (size_t j = 0; j < size; ++j) {
      lo = std::min(lo, range[j].logit);
      hi = std::max(hi, range[j].logit);
    }
    if (lo == hi) break;  // all tied: id order is the order
    const double scale = kBuckets / (static_cast<double>(hi) - lo);
    auto bucket = [&](float l) {
      return std::min(kBuckets - 1, static_cast<int>((static_cast<double>(hi) - l) * scale));
    };
    s.bucket_mass.assign(kBuckets, 0.0);
    for (size_t j = 0; j < size; ++j) s.bucket_mass[bucket(range[j].logit)] += range[j].w;
    int crossing = -1;
    for (int b = 0; b < kBuckets && crossing < 0; ++b) {
      if (acc + s.bucket_mass[b] >= target) {
        crossing = b;
      } else {
        acc += s.bucket_mass[b];
      }
    }
    if (crossing < 0) return std::nullopt;
    // Compact the crossing bucket's members to the front of `work`, keeping id order.
    s.work.resize(std::max(s.work.size(), size));
    size_t kept = 0;
    for (size_t j = 0; j < size; ++j) {
      if (bucket(range[j].logit) == crossing) s.work[kept++] = range[j];
    }
    range = s.work.data();
    size = kept;
  }
  if (range == s.work.data()) {
    s.work.resize(size);
  } else {
    s.work.assign(range, range + size);
  }
  auto before = [](const Candidate& a, const Candidate& b) { return Before(a, b); };
  // Ties in id order are already in order; so is a range whose logits are all equal.
  if (!std::is_sorted(s.work.begin(), s.work.end(), before)) {
    std::sort(s.work.begin(), s.work.end(), before);
  }
  for (const Candidate& x : s.work) {
    acc += x.w;
    if (acc >= target) return x;
  }
  return std::nullopt;
}

}  // namespace

absl::Status ValidateSamplingOptions(const SamplingOptions& o) {
  if (!(o.temperature >= 0.0f) || std::isinf(o.temperature)) {
    return OutOfRange("temperature", "finite and >= 0", o.temperature);
  }
  if (o.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.top_k must be >= 0, got %d", o.top_k));
  }
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) return OutOfRange("top_p", "in (0, 1]", o.top_p);
  if (!(o.min_p >= 0.0f && o.min_p <= 1.0f)) return OutOfRange("min_p", "in [0, 1]", o.min_p);
  if (!(o.repetition_penalty > 0.0f) || std::isinf(o.repetition_penalty)) {
    return OutOfRange("repetition_penalty", "finite and > 0", o.repetition_penalty);
  }
  if (!(o.frequency_penalty >= -2.0f && o.frequency_penalty <= 2.0f)) {
    return OutOfRange("frequency_penalty", "in [-2, 2]", o.frequency_penalty);
  }
  if (!(o.presence_penalty >= -2.0f && o.presence_penalty <= 2.0f)) {
    return OutOfRange("presence_penalty", "in [-2, 2]", o.presence_penalty);
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingOptions& options, int64_t vocab_size,
                 const std::vector<int32_t>& prompt_tokens)
    : options_(options), vocab_size_(vocab_size), rng_(options.seed) {
  DSV2_CHECK_MSG(ValidateSamplingOptions(options).ok(), "call ValidateSamplingOptions first");
  DSV2_CHECK(vocab_size > 0 && vocab_size <= std::numeric_limits<int32_t>::max());
  seen_bits_.assign((vocab_size + 63) / 64, 0);
  for (int32_t t : prompt_tokens) MarkSeen(t);
}

void Sampler::MarkSeen(int32_t token) {
  if (token < 0 || token >= vocab_size_) return;
  uint64_t& word = seen_bits_[token / 64];
  const uint64_t bit = uint64_t{1} << (token % 64);
  if (word & bit) return;
  word |= bit;
  seen_.push_back(token);
}

void Sampler::Accept(int32_t token) {
  if (token < 0 || token >= vocab_size_) return;
  MarkSeen(token);
  ++counts_[token];
}

void Sampler::ApplyPenalties(float* logits) const {
  const float rp = options_.repetition_penalty;
  if (rp != 1.0f) {
    for (int32_t t : seen_) logits[t] = logits[t] > 0.0f ? logits[t] / rp : logits[t] * rp;
  }
  const float fp = options_.frequency_penalty;
  const float pp = options_.presence_penalty;
  if (fp != 0.0f || pp != 0.0f) {
    // Each token is touched once, so the map's iteration order does not matter.
    for (const auto& [t, count] : counts_) {
      logits[t] -= fp * static_cast<float>(count);
      logits[t] -= pp;
    }
  }
}

int32_t Sampler::Sample(float* logits) {
  const int64_t n = vocab_size_;
  ApplyPenalties(logits);
  if (options_.temperature == 0.0f) return Argmax(logits, n);

  if (options_.temperature != 1.0f) {
    const float t = options_.temperature;
    for (int64_t i = 0; i < n; ++i) logits[i] /= t;
  }
  const float max_logit = MaxLogit(logits, n);
  if (!std::isfinite(max_logit)) {
    // +inf takes all of the mass (lowest such id); all -inf/NaN leaves nothing to draw from.
    return Argmax(logits, n);
  }
  auto weight = [max_logit](float l) { return std::exp(l - max_logit); };

  // The kept set is a prefix of the order `Before`, described by its last element `cut`; each
  // filter can only move the cut earlier. Where a filter needs it, `cand` lists (in id order) a
  // superset of the kept tokens.
  Candidate cut{-kInf, 0.0f, kLastId};
  auto tighten = [&cut](const Candidate& c) {
    if (Before(c, cut)) cut = c;
  };
  const float min_logit = options_.min_p > 0.0f ? max_logit + std::log(options_.min_p) : -kInf;
  tighten({min_logit, 0.0f, kLastId});

  Scratch& scratch = ThreadScratch();
  std::vector<Candidate>& cand = scratch.candidates;
  bool have_candidates = false;
  const bool top_k = options_.top_k > 0 && options_.top_k < n;
  if (top_k) {
    if (std::optional<Candidate> k_th = SelectTopK(logits, n, options_.top_k, scratch)) {
      tighten(*k_th);
    }
    for (Candidate& c : cand) c.w = weight(c.logit);
    have_candidates = true;
  }
  if (options_.top_p < 1.0f) {
    // Top-p renormalises over the top-k survivors (or the whole vocabulary), before min-p.
    // Tokens under `floor_w` are outside the nucleus: at most n of them weigh at most
    // (1 - top_p) * z together, so what lies above still reaches the target. As z >= 1 (the
    // maximum weighs 1), the floor for z = 1 is a safe first cut while z is being summed.
    const double p_out = 1.0 - options_.top_p;
    auto floor_logit = [&](double z) {
      const double floor_w = p_out * z / static_cast<double>(n);
      return std::max(min_logit, max_logit + static_cast<float>(std::log(floor_w)));
    };
    double z = 0.0;
    if (top_k) {
      for (const Candidate& c : cand) z += c.w;
    } else {
      const float loose = floor_logit(1.0);
      cand.resize(n);
      size_t listed = 0;
      double lane[4] = {0.0, 0.0, 0.0, 0.0};  // fixed order, no long dependency chain
      for (int64_t i = 0; i < n; ++i) {
        const float l = logits[i];
        if (std::isnan(l)) continue;
        const float w = weight(l);
        lane[i % 4] += w;
        cand[listed] = {l, w, static_cast<int32_t>(i)};
        listed += l >= loose ? 1 : 0;
      }
      z = (lane[0] + lane[1]) + (lane[2] + lane[3]);
      cand.resize(listed);
      have_candidates = true;
    }
    const float tight = floor_logit(z);
    KeepIf(cand, [tight](const Candidate& c) { return c.logit >= tight; });
    const double target = options_.top_p * z;
    if (std::optional<Candidate> last = SelectNucleus(cand, target, scratch)) {
      tighten(*last);
    } else {
      // Short only by rounding (or because min-p dropped the rest): keep what is listed.
      tighten(
          *std::min_element(cand.begin(), cand.end(),
                            [](const Candidate& a, const Candidate& b) { return Before(b, a); }));
    }
  }

  // The draw walks the kept tokens in id order with weights exp(logit - max): the same on every
  // platform, whichever way the filters found the cut. The maximum is always kept (weight 1).
  auto kept = [&cut](float l, int32_t id) {
    // Branch-free: ~half of a large candidate list may fall either side of the cut.
    return (l > cut.logit) | ((l == cut.logit) & (id <= cut.id));  // false for NaN
  };
  const double u = rng_.NextDouble();
  if (have_candidates) {
    for (Candidate& c : cand) c.w = kept(c.logit, c.id) ? c.w : 0.0f;
    const int64_t j = DrawIndex(
        static_cast<int64_t>(cand.size()), [&cand](int64_t j) { return cand[j].w; }, u, scratch);
    return cand[j].id;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float l = logits[i];
    logits[i] = kept(l, static_cast<int32_t>(i)) ? weight(l) : 0.0f;  // scratch from here on
  }
  return static_cast<int32_t>(DrawIndex(
      n, [logits](int64_t i) { return logits[i]; }, u, scratch));
}

}  // namespace dsv2
