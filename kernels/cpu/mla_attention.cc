#include "kernels/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/check.h"

namespace dsv2::cpu {
namespace {

// Compiled for several ISAs; the loader picks the best the processor has. Under TSan, one
// version only: the loader calls the ifunc resolver during relocation, before TSan's runtime is
// initialised, and an instrumented resolver crashes there (GCC 12 instruments it).
#if defined(__SANITIZE_THREAD__)
#define DSV2_ISA_CLONES
#else
#define DSV2_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

DSV2_ISA_CLONES float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

DSV2_ISA_CLONES void Axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

void MlaAttention(const CpuContext& ctx, const MlaAttentionArgs& a) {
  const int64_t q_dim = a.kv_lora_rank + a.rope_dim;
  const LatentCacheLayerView& c = a.cache;
  DSV2_CHECK(a.n_tokens >= 0 && a.n_heads >= 0);
  if (a.n_tokens == 0 || a.n_heads == 0) return;
  DSV2_CHECK_MSG(c.dtype == DType::kF32, "MlaAttention (CPU): the cache is float32");
  DSV2_CHECK(a.q != nullptr && a.out != nullptr && a.positions != nullptr &&
             a.token_table != nullptr && a.block_tables != nullptr && c.base != nullptr);
  const float* base = static_cast<const float*>(c.base);
  ctx.ParallelFor(a.n_tokens * a.n_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / a.n_heads;
      const int64_t h = task % a.n_heads;
      const float* q = static_cast<const float*>(a.q) + (t * a.n_heads + h) * q_dim;  // [576]
      float* o = static_cast<float*>(a.out) + (t * a.n_heads + h) * a.kv_lora_rank;
      const int32_t* pages = a.block_tables + static_cast<int64_t>(a.token_table[t]) * a.max_pages;
      const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
      auto row = [&](int64_t j) {
        return base + pages[j / c.page_size] * c.page_stride + (j % c.page_size) * c.row_dim;
      };
      scores.resize(len);
      float max_score = -INFINITY;
      for (int64_t j = 0; j < len; ++j) {
        const float* r = row(j);
        // Two dots rather than one over 576 values: the same sums the reference forms.
        const float s =
            (Dot(q, r, a.kv_lora_rank) + Dot(q + a.kv_lora_rank, r + a.kv_lora_rank, a.rope_dim)) *
            a.softmax_scale;
        scores[j] = s;
        max_score = std::max(max_score, s);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < len; ++j) {
        scores[j] = std::exp(scores[j] - max_score);
        sum += scores[j];
      }
      const float inv = 1.0f / sum;
      std::fill(o, o + a.kv_lora_rank, 0.0f);
      for (int64_t j = 0; j < len; ++j) Axpy(scores[j] * inv, row(j), o, a.kv_lora_rank);
    }
  });
}

}  // namespace dsv2::cpu
