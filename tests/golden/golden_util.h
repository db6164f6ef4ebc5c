// Shared by the golden tests (CPU and GPU): reading the fixture tensors and the per-row error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"

namespace dsv2 {

// An I64 fixture tensor as int32 token ids.
inline std::vector<int32_t> Ints(const TensorInfo& t) {
  std::vector<int32_t> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i)
    v[i] = static_cast<int32_t>(static_cast<const int64_t*>(t.data)[i]);
  return v;
}

// Mean negative log-likelihood of ids[1:] given the prefixes, one forward over the window
// (logits for every position), in float64 from the model's logits.
inline double WindowNll(const DeepseekV2Model& model, const ExecContext& ctx,
                        const std::vector<int32_t>& ids) {
  const int64_t len = static_cast<int64_t>(ids.size()), vocab = model.config().vocab_size;
  LatentKvCache cache = *model.MakeCache((len + 63) / 64, 64);
  ForwardBatch batch;
  batch.Add(cache.AddSequence(), 0, ids, /*all_logits=*/true);
  std::vector<float> logits;  // [len, vocab]
  if (!model.Forward(ctx, cache, batch, &logits).ok()) return NAN;
  double nll = 0;
  for (int64_t t = 0; t + 1 < len; ++t) {
    const float* row = &logits[t * vocab];
    double max = row[0], z = 0;
    for (int64_t v = 1; v < vocab; ++v) max = std::max<double>(max, row[v]);
    for (int64_t v = 0; v < vocab; ++v) z += std::exp(row[v] - max);
    nll += max + std::log(z) - row[ids[t + 1]];
  }
  return nll / static_cast<double>(len - 1);
}

// The index of the largest of v[0..n) (the first of equals).
inline int32_t Argmax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

// ‖ours − ref‖₂ / ‖ref‖₂ over one row of logits.
inline double RowRelError(const float* ours, const float* ref, int64_t n) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff += (double(ours[i]) - ref[i]) * (double(ours[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff / norm);
}

}  // namespace dsv2
