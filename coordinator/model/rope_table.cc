#include "coordinator/model/rope_table.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv2 {
namespace {

// The dimension index whose wavelength makes `num_rotations` turns over the original context.
double CorrectionDim(double num_rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (num_rotations * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(base));
}

}  // namespace

RopeTable RopeTable::FromConfig(const ModelConfig& c) {
  RopeTable t;
  const int64_t dim = c.qk_rope_head_dim;
  const int64_t half = dim / 2;
  t.inv_freq.resize(half);
  // θ_extra = base^(−2i/d), computed in float32 as the reference does.
  std::vector<float> extra(half);
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    extra[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
  }
  if (!c.rope_scaling) {
    t.inv_freq = extra;
    return t;
  }
  const YarnRopeScaling& y = *c.rope_scaling;
  const double orig = static_cast<double>(y.original_max_position_embeddings);
  double low = std::floor(CorrectionDim(y.beta_fast, dim, c.rope_theta, orig));
  double high = std::ceil(CorrectionDim(y.beta_slow, dim, c.rope_theta, orig));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp(static_cast<float>((i - low) / (high - low)), 0.0f, 1.0f);
    const float extra_weight = 1.0f - ramp;  // 1: keep the original frequency
    const float inter = extra[i] / static_cast<float>(y.factor);
    t.inv_freq[i] = inter * (1.0f - extra_weight) + extra[i] * extra_weight;
  }
  t.attn_factor = static_cast<float>(YarnGetMscale(y.factor, y.mscale) /
                                     YarnGetMscale(y.factor, y.mscale_all_dim));
  return t;
}

}  // namespace dsv2
