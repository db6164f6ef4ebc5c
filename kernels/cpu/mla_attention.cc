#include "kernels/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512 __attribute__((target("avx512f,fma")))
#define DSV2_AVX2 __attribute__((target("avx2,fma")))

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

// The rows j = 0..len-1 of one query token's sequence.
struct SequenceRows {
  const float* base;
  const int32_t* pages;
  int64_t page_size, page_stride, row_dim;
  const float* operator()(int64_t j) const {
    return base + pages[j / page_size] * page_stride + (j % page_size) * row_dim;
  }
};

// Softmax over each head's scores [G, len] in place: the weights the values are summed with.
template <int G>
void SoftmaxRows(float* scores, int64_t len, const float* max_score) {
  for (int h = 0; h < G; ++h) {
    float* p = scores + h * len;
    float sum = 0.0f;
    for (int64_t j = 0; j < len; ++j) {
      p[j] = std::exp(p[j] - max_score[h]);
      sum += p[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < len; ++j) p[j] *= inv;
  }
}

// AVX-512, kv_lora_rank and rope_dim multiples of 16: the heads [h0, h0 + G) of one token
// together, so that each cache row is read once for all of them (the rows are the keys and the
// values of every head). Scores: per row, 16-lane partial sums for the latent and the rope part
// of each head, reduced. Values: 32 output columns of every head at a time in registers over
// all rows (each row's cache lines are read once per token and head group).
template <int G>
DSV2_AVX512 void HeadGroup512(const MlaAttentionArgs& a, const SequenceRows& row, int64_t len,
                              const float* q, float* o, std::vector<float>& scores) {
  const int64_t rank = a.kv_lora_rank, rope = a.rope_dim, q_dim = rank + rope;
  scores.resize(G * len);  // [G, len]
  float max_score[G];
  for (int h = 0; h < G; ++h) max_score[h] = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    const float* r = row(j);
    __m512 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm512_setzero_ps();
    for (int64_t k = 0; k < rank; k += 16) {
      const __m512 rv = _mm512_loadu_ps(r + k);
      for (int h = 0; h < G; ++h)
        lat[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * q_dim + k), rv, lat[h]);
    }
    for (int64_t k = rank; k < q_dim; k += 16) {
      const __m512 rv = _mm512_loadu_ps(r + k);
      for (int h = 0; h < G; ++h)
        pe[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * q_dim + k), rv, pe[h]);
    }
    for (int h = 0; h < G; ++h) {
      const float sc =
          (_mm512_reduce_add_ps(lat[h]) + _mm512_reduce_add_ps(pe[h])) * a.softmax_scale;
      scores[h * len + j] = sc;
      max_score[h] = std::max(max_score[h], sc);
    }
  }
  SoftmaxRows<G>(scores.data(), len, max_score);
  for (int64_t k = 0; k < rank; k += 32) {
    __m512 lo[G], hi[G];
    for (int h = 0; h < G; ++h) lo[h] = hi[h] = _mm512_setzero_ps();
    for (int64_t j = 0; j < len; ++j) {
      const float* r = row(j) + k;
      const __m512 r0 = _mm512_loadu_ps(r);
      const __m512 r1 = k + 16 < rank ? _mm512_loadu_ps(r + 16) : _mm512_setzero_ps();
      for (int h = 0; h < G; ++h) {
        const __m512 w = _mm512_set1_ps(scores[h * len + j]);
        lo[h] = _mm512_fmadd_ps(w, r0, lo[h]);
        hi[h] = _mm512_fmadd_ps(w, r1, hi[h]);
      }
    }
    for (int h = 0; h < G; ++h) {
      _mm512_storeu_ps(o + h * rank + k, lo[h]);
      if (k + 16 < rank) _mm512_storeu_ps(o + h * rank + k + 16, hi[h]);
    }
  }
}

DSV2_AVX2 inline float Sum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// HeadGroup512 in 8 lanes (kv_lora_rank and rope_dim multiples of 8), 16 output columns of
// every head at a time.
template <int G>
DSV2_AVX2 void HeadGroup256(const MlaAttentionArgs& a, const SequenceRows& row, int64_t len,
                            const float* q, float* o, std::vector<float>& scores) {
  const int64_t rank = a.kv_lora_rank, rope = a.rope_dim, q_dim = rank + rope;
  scores.resize(G * len);  // [G, len]
  float max_score[G];
  for (int h = 0; h < G; ++h) max_score[h] = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    const float* r = row(j);
    __m256 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm256_setzero_ps();
    for (int64_t k = 0; k < rank; k += 8) {
      const __m256 rv = _mm256_loadu_ps(r + k);
      for (int h = 0; h < G; ++h) {
        lat[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * q_dim + k), rv, lat[h]);
      }
    }
    for (int64_t k = rank; k < q_dim; k += 8) {
      const __m256 rv = _mm256_loadu_ps(r + k);
      for (int h = 0; h < G; ++h) {
        pe[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * q_dim + k), rv, pe[h]);
      }
    }
    for (int h = 0; h < G; ++h) {
      const float sc = (Sum8(lat[h]) + Sum8(pe[h])) * a.softmax_scale;
      scores[h * len + j] = sc;
      max_score[h] = std::max(max_score[h], sc);
    }
  }
  SoftmaxRows<G>(scores.data(), len, max_score);
  for (int64_t k = 0; k < rank; k += 16) {
    const bool two = k + 8 < rank;
    __m256 lo[G], hi[G];
    for (int h = 0; h < G; ++h) lo[h] = hi[h] = _mm256_setzero_ps();
    for (int64_t j = 0; j < len; ++j) {
      const float* r = row(j) + k;
      const __m256 r0 = _mm256_loadu_ps(r);
      const __m256 r1 = two ? _mm256_loadu_ps(r + 8) : _mm256_setzero_ps();
      for (int h = 0; h < G; ++h) {
        const __m256 w = _mm256_set1_ps(scores[h * len + j]);
        lo[h] = _mm256_fmadd_ps(w, r0, lo[h]);
        hi[h] = _mm256_fmadd_ps(w, r1, hi[h]);
      }
    }
    for (int h = 0; h < G; ++h) {
      _mm256_storeu_ps(o + h * rank + k, lo[h]);
      if (two) _mm256_storeu_ps(o + h * rank + k + 8, hi[h]);
    }
  }
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
  const bool avx512 =
      ctx.isa() == CpuIsa::kAvx512 && a.kv_lora_rank % 16 == 0 && a.rope_dim % 16 == 0;
  const bool avx2 = ctx.isa() == CpuIsa::kAvx2 && a.kv_lora_rank % 8 == 0 && a.rope_dim % 8 == 0;
  if (avx512 || avx2) {
    // Tasks: (token, group of up to 8 heads with AVX-512, 4 with AVX2's 16 registers).
    const int64_t kGroup = avx512 ? 8 : 4;
    using GroupFn = void (*)(const MlaAttentionArgs&, const SequenceRows&, int64_t, const float*,
                             float*, std::vector<float>&);
    static constexpr GroupFn k512[] = {HeadGroup512<1>, HeadGroup512<2>, HeadGroup512<3>,
                                       HeadGroup512<4>, HeadGroup512<5>, HeadGroup512<6>,
                                       HeadGroup512<7>, HeadGroup512<8>};
    static constexpr GroupFn k256[] = {HeadGroup256<1>, HeadGroup256<2>, HeadGroup256<3>,
                                       HeadGroup256<4>};
    const GroupFn* const head_group = avx512 ? k512 : k256;  // [g - 1]: g heads at once
    const int64_t groups = (a.n_heads + kGroup - 1) / kGroup;
    ctx.ParallelFor(a.n_tokens * groups, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scores;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t t = task / groups;
        const int64_t h0 = task % groups * kGroup;
        const SequenceRows row{
            base, a.block_tables + static_cast<int64_t>(a.token_table[t]) * a.max_pages,
            c.page_size, c.page_stride, c.row_dim};
        const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
        const float* q = static_cast<const float*>(a.q) + (t * a.n_heads + h0) * q_dim;
        float* o = static_cast<float*>(a.out) + (t * a.n_heads + h0) * a.kv_lora_rank;
        head_group[std::min(kGroup, a.n_heads - h0) - 1](a, row, len, q, o, scores);
      }
    });
    return;
  }
  ctx.ParallelFor(a.n_tokens * a.n_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / a.n_heads;
      const int64_t h = task % a.n_heads;
      const float* q = static_cast<const float*>(a.q) + (t * a.n_heads + h) * q_dim;  // [576]
      float* o = static_cast<float*>(a.out) + (t * a.n_heads + h) * a.kv_lora_rank;
      const SequenceRows row{base,
                             a.block_tables + static_cast<int64_t>(a.token_table[t]) * a.max_pages,
                             c.page_size, c.page_stride, c.row_dim};
      const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
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
      SoftmaxRows<1>(scores.data(), len, &max_score);
      std::fill(o, o + a.kv_lora_rank, 0.0f);
      for (int64_t j = 0; j < len; ++j) Axpy(scores[j], row(j), o, a.kv_lora_rank);
    }
  });
}

}  // namespace dsv2::cpu
