#include "kernels/latent_cache_write.h"

#include <cmath>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/rope.h"

namespace dsv2::cpu {

namespace {

// The token rows of one layer, in T (the cache's dtype, the activation dtype).
template <typename T>
void WriteRows(const LatentCacheWriteArgs& a) {
  const LatentCacheLayerView& c = a.cache;
  const int64_t r = a.kv_lora_rank;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const T* in = static_cast<const T*>(a.ckv) + t * a.ckv_stride;  // [r + rope_dim]
    const int64_t slot = a.slots[t];
    T* row = static_cast<T*>(c.base) + (slot / c.page_size) * c.page_stride +
             (slot % c.page_size) * c.row_dim;  // [r + rope_dim]
    // c_norm = rmsnorm(c) · weight, as kernels/cpu/rms_norm.cc.
    double sum_sq = 0.0;
    for (int64_t i = 0; i < r; ++i) {
      const double v = ToFloat(in[i]);
      sum_sq += v * v;
    }
    const float inv_rms =
        1.0f / std::sqrt(static_cast<float>(sum_sq / static_cast<double>(r)) + a.eps);
    for (int64_t i = 0; i < r; ++i) {
      row[i] = FromFloat<T>(a.norm_weight[i] * RoundTo<T>(ToFloat(in[i]) * inv_rms));
    }
    // k_pe roped at the token's position.
    const float pos = static_cast<float>(a.positions[t]);
    for (int64_t i = 0; i < a.rope_dim / 2; ++i) {
      const float angle = pos * a.inv_freq[i];
      const RotatedPair p = RotatePair(ToFloat(in[r + 2 * i]), ToFloat(in[r + 2 * i + 1]),
                                       std::cos(angle), std::sin(angle), a.attn_factor);
      row[r + 2 * i] = FromFloat<T>(p.first);
      row[r + 2 * i + 1] = FromFloat<T>(p.second);
    }
  }
}

}  // namespace

void LatentCacheWrite(const CpuContext& ctx, const LatentCacheWriteArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0);
  if (a.n_tokens == 0) return;
  const LatentCacheLayerView& c = a.cache;
  DSV2_CHECK_MSG(c.dtype == ctx.act_dtype(),
                 "LatentCacheWrite (CPU): the cache is in the activation dtype");
  DSV2_CHECK(c.row_dim == a.kv_lora_rank + a.rope_dim && a.rope_dim % 2 == 0);
  DSV2_CHECK(a.ckv != nullptr && a.norm_weight != nullptr && a.positions != nullptr &&
             a.slots != nullptr && a.inv_freq != nullptr && c.base != nullptr);
  DispatchAct(ctx.act_dtype(), [&](auto tag) { WriteRows<decltype(tag)>(a); });
}

}  // namespace dsv2::cpu
