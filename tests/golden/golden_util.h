// Shared by the golden tests (CPU and GPU): reading the fixture tensors and the per-row error.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/safetensors.h"

namespace dsv2 {

// An I64 fixture tensor as int32 token ids.
inline std::vector<int32_t> Ints(const TensorInfo& t) {
  std::vector<int32_t> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i)
    v[i] = static_cast<int32_t>(static_cast<const int64_t*>(t.data)[i]);
  return v;
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
