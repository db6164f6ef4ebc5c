#include "kernels/latent_cache_write.h"

#include <cmath>

#include "kernels/check.h"
#include "kernels/rope.h"

namespace dsv2::cpu {

void LatentCacheWrite(const CpuContext& /*ctx*/, const LatentCacheWriteArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0);
  if (a.n_tokens == 0) return;
  const LatentCacheLayerView& c = a.cache;
  DSV2_CHECK_MSG(c.dtype == DType::kF32, "LatentCacheWrite (CPU): the cache is float32");
  DSV2_CHECK(c.row_dim == a.kv_lora_rank + a.rope_dim && a.rope_dim % 2 == 0);
  DSV2_CHECK(a.ckv != nullptr && a.norm_weight != nullptr && a.positions != nullptr &&
             a.slots != nullptr && a.inv_freq != nullptr && c.base != nullptr);
  const int64_t r = a.kv_lora_rank;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const float* in = static_cast<const float*>(a.ckv) + t * a.ckv_stride;  // [r + rope_dim]
    const int64_t slot = a.slots[t];
    float* row = static_cast<float*>(c.base) + (slot / c.page_size) * c.page_stride +
                 (slot % c.page_size) * c.row_dim;  // [r + rope_dim]
    // c_norm = rmsnorm(c) · weight, as kernels/cpu/rms_norm.cc.
    double sum_sq = 0.0;
    for (int64_t i = 0; i < r; ++i) sum_sq += static_cast<double>(in[i]) * in[i];
    const float inv_rms =
        1.0f / std::sqrt(static_cast<float>(sum_sq / static_cast<double>(r)) + a.eps);
    for (int64_t i = 0; i < r; ++i) row[i] = a.norm_weight[i] * (in[i] * inv_rms);
    // k_pe roped at the token's position.
    const float pos = static_cast<float>(a.positions[t]);
    for (int64_t i = 0; i < a.rope_dim / 2; ++i) {
      const float angle = pos * a.inv_freq[i];
      const RotatedPair p = RotatePair(in[r + 2 * i], in[r + 2 * i + 1], std::cos(angle),
                                       std::sin(angle), a.attn_factor);
      row[r + 2 * i] = p.first;
      row[r + 2 * i + 1] = p.second;
    }
  }
}

}  // namespace dsv2::cpu
