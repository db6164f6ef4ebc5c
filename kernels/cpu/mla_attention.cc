#include "kernels/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/simd_intrinsics.h"

#define DSV2_AVX512 __attribute__((target("avx512f,fma")))
#define DSV2_AVX2 __attribute__((target("avx2,fma")))
#define DSV2_AVX512BF16 __attribute__((target("avx512f,avx512bf16,fma")))

namespace dsv2::cpu {
namespace {

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

// The rows j = 0..len-1 of one query token's sequence, in the cache's dtype T.
template <typename T>
struct SequenceRows {
  const T* base;
  const int32_t* pages;
  int64_t page_size, page_stride, row_dim;
  const T* operator()(int64_t j) const {
    return base + pages[j / page_size] * page_stride + (j % page_size) * row_dim;
  }
};

// 16 (AVX-512) or 8 (AVX2) consecutive cache values as floats; bf16 widens exactly.
DSV2_AVX512 inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
DSV2_AVX512 inline __m512 Load16(const Bf16* p) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
DSV2_AVX2 inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
DSV2_AVX2 inline __m256 Load8(const Bf16* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

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
// The values of G heads: 32 output columns of every head at a time in registers over all rows
// (each row's cache lines are read once per token and head group). scores: [G, len] weights.
template <int G, typename T>
DSV2_AVX512 void Values512(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t len,
                           const std::vector<float>& scores, float* o) {
  const int64_t rank = a.kv_lora_rank;
  for (int64_t k = 0; k < rank; k += 32) {
    __m512 lo[G], hi[G];
    for (int h = 0; h < G; ++h) lo[h] = hi[h] = _mm512_setzero_ps();
    for (int64_t j = 0; j < len; ++j) {
      const T* r = row(j) + k;
      const __m512 r0 = Load16(r);
      const __m512 r1 = k + 16 < rank ? Load16(r + 16) : _mm512_setzero_ps();
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

template <int G, typename T>
DSV2_AVX512 void HeadGroup512(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t len,
                              const float* q, float* o, std::vector<float>& scores) {
  const int64_t rank = a.kv_lora_rank, rope = a.rope_dim, q_dim = rank + rope;
  scores.resize(G * len);  // [G, len]
  float max_score[G];
  for (int h = 0; h < G; ++h) max_score[h] = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    const T* r = row(j);
    __m512 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm512_setzero_ps();
    for (int64_t k = 0; k < rank; k += 16) {
      const __m512 rv = Load16(r + k);
      for (int h = 0; h < G; ++h)
        lat[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * q_dim + k), rv, lat[h]);
    }
    for (int64_t k = rank; k < q_dim; k += 16) {
      const __m512 rv = Load16(r + k);
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
  Values512<G, T>(a, row, len, scores, o);
}

// HeadGroup512 with bf16 query and rows (kv_lora_rank and rope_dim multiples of 32): the scores
// by vdpbf16ps, the products of bf16 pairs exact in float32 as the FMAs on widened values are;
// 32 values per instruction and no widening. The values stay float32 FMAs (the weights are
// float32, as the GPU keeps them).
template <int G>
DSV2_AVX512BF16 void HeadGroupDot(const MlaAttentionArgs& a, const SequenceRows<Bf16>& row,
                                  int64_t len, const Bf16* q, float* o,
                                  std::vector<float>& scores) {
  const int64_t rank = a.kv_lora_rank, rope = a.rope_dim, q_dim = rank + rope;
  const uint16_t* qb = &q->bits;
  scores.resize(G * len);  // [G, len]
  float max_score[G];
  for (int h = 0; h < G; ++h) max_score[h] = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    const uint16_t* r = &row(j)->bits;
    __m512 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm512_setzero_ps();
    for (int64_t k = 0; k < rank; k += 32) {
      const __m512bh rv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(r + k));
      for (int h = 0; h < G; ++h) {
        const __m512bh qv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(qb + h * q_dim + k));
        lat[h] = _mm512_dpbf16_ps(lat[h], qv, rv);
      }
    }
    for (int64_t k = rank; k < q_dim; k += 32) {
      const __m512bh rv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(r + k));
      for (int h = 0; h < G; ++h) {
        const __m512bh qv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(qb + h * q_dim + k));
        pe[h] = _mm512_dpbf16_ps(pe[h], qv, rv);
      }
    }
    for (int h = 0; h < G; ++h) {
      const float sc =
          (_mm512_reduce_add_ps(lat[h]) + _mm512_reduce_add_ps(pe[h])) * a.softmax_scale;
      scores[h * len + j] = sc;
      max_score[h] = std::max(max_score[h], sc);
    }
  }
  SoftmaxRows<G>(scores.data(), len, max_score);
  Values512<G, Bf16>(a, row, len, scores, o);
}

DSV2_AVX2 inline float Sum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// HeadGroup512 in 8 lanes (kv_lora_rank and rope_dim multiples of 8), 16 output columns of
// every head at a time.
template <int G, typename T>
DSV2_AVX2 void HeadGroup256(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t len,
                            const float* q, float* o, std::vector<float>& scores) {
  const int64_t rank = a.kv_lora_rank, rope = a.rope_dim, q_dim = rank + rope;
  scores.resize(G * len);  // [G, len]
  float max_score[G];
  for (int h = 0; h < G; ++h) max_score[h] = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    const T* r = row(j);
    __m256 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm256_setzero_ps();
    for (int64_t k = 0; k < rank; k += 8) {
      const __m256 rv = Load8(r + k);
      for (int h = 0; h < G; ++h) {
        lat[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * q_dim + k), rv, lat[h]);
      }
    }
    for (int64_t k = rank; k < q_dim; k += 8) {
      const __m256 rv = Load8(r + k);
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
      const T* r = row(j) + k;
      const __m256 r0 = Load8(r);
      const __m256 r1 = two ? Load8(r + 8) : _mm256_setzero_ps();
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

// `count` values of the query (or a cache row) as float32: in place for float, else widened into
// `buf`.
const float* QueryAsFloat(const float* q, int64_t /*count*/, std::vector<float>& /*buf*/) {
  return q;
}
const float* QueryAsFloat(const Bf16* q, int64_t count, std::vector<float>& buf) {
  buf.resize(count);
  WidenBf16(q, buf.data(), count);
  return buf.data();
}

// Where the float32 results of `count` values go: `out` itself for float, else `buf`, rounded
// into out by Finish.
float* OutAsFloat(float* out, int64_t /*count*/, std::vector<float>& /*buf*/) { return out; }
float* OutAsFloat(Bf16* /*out*/, int64_t count, std::vector<float>& buf) {
  buf.resize(count);
  return buf.data();
}
void Finish(const float* /*o*/, float* /*out*/, int64_t /*count*/) {}
void Finish(const float* o, Bf16* out, int64_t count) { RoundToBf16(o, out, count); }

// The attention in the cache's dtype T (the activation dtype): scores, softmax and sums in
// float32, each head's output rounded to T once (the CUDA twin's rounding).
template <typename T>
void Attend(const CpuContext& ctx, const MlaAttentionArgs& a) {
  const int64_t q_dim = a.kv_lora_rank + a.rope_dim, rank = a.kv_lora_rank;
  const LatentCacheLayerView& c = a.cache;
  const T* base = static_cast<const T*>(c.base);
  const T* q_all = static_cast<const T*>(a.q);
  T* out_all = static_cast<T*>(a.out);
  const bool avx512 =
      ctx.isa() >= CpuIsa::kAvx512 && a.kv_lora_rank % 16 == 0 && a.rope_dim % 16 == 0;
  const bool avx2 = ctx.isa() == CpuIsa::kAvx2 && a.kv_lora_rank % 8 == 0 && a.rope_dim % 8 == 0;
  auto rows_of = [&](int64_t t) {
    return SequenceRows<T>{base,
                           a.block_tables + static_cast<int64_t>(a.token_table[t]) * a.max_pages,
                           c.page_size, c.page_stride, c.row_dim};
  };
  // Runs group_fn(t, h0, g, len, o, scores, q_buf) for every task (token t, heads h0 .. h0+g-1,
  // g <= group): o is the group's float32 output [g, rank], rounded into out afterwards.
  auto per_head_group = [&](int64_t group, auto&& group_fn) {
    const int64_t groups = (a.n_heads + group - 1) / group;
    ctx.ParallelFor(a.n_tokens * groups, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scores, q_buf, o_buf;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t t = task / groups, h0 = task % groups * group;
        const int64_t g = std::min(group, a.n_heads - h0);
        const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
        T* out = out_all + (t * a.n_heads + h0) * rank;
        float* o = OutAsFloat(out, g * rank, o_buf);
        group_fn(t, h0, g, len, o, scores, q_buf);
        Finish(o, out, g * rank);
      }
    });
  };
  // bf16 query and rows with the bf16 dot product: the scores by vdpbf16ps (HeadGroupDot).
  if constexpr (std::is_same_v<T, Bf16>) {
    if (ctx.isa() >= CpuIsa::kAvx512Bf16 && a.kv_lora_rank % 32 == 0 && a.rope_dim % 32 == 0) {
      using DotFn = void (*)(const MlaAttentionArgs&, const SequenceRows<Bf16>&, int64_t,
                             const Bf16*, float*, std::vector<float>&);
      static constexpr DotFn kDot[] = {HeadGroupDot<1>, HeadGroupDot<2>, HeadGroupDot<3>,
                                       HeadGroupDot<4>, HeadGroupDot<5>, HeadGroupDot<6>,
                                       HeadGroupDot<7>, HeadGroupDot<8>};
      per_head_group(8, [&](int64_t t, int64_t h0, int64_t g, int64_t len, float* o,
                            std::vector<float>& scores, std::vector<float>& /*q_buf*/) {
        kDot[g - 1](a, rows_of(t), len, q_all + (t * a.n_heads + h0) * q_dim, o, scores);
      });
      return;
    }
  }
  if (avx512 || avx2) {
    // Tasks: (token, group of up to 8 heads with AVX-512, 4 with AVX2's 16 registers).
    const int64_t kGroup = avx512 ? 8 : 4;
    using GroupFn = void (*)(const MlaAttentionArgs&, const SequenceRows<T>&, int64_t, const float*,
                             float*, std::vector<float>&);
    static constexpr GroupFn k512[] = {HeadGroup512<1, T>, HeadGroup512<2, T>, HeadGroup512<3, T>,
                                       HeadGroup512<4, T>, HeadGroup512<5, T>, HeadGroup512<6, T>,
                                       HeadGroup512<7, T>, HeadGroup512<8, T>};
    static constexpr GroupFn k256[] = {HeadGroup256<1, T>, HeadGroup256<2, T>, HeadGroup256<3, T>,
                                       HeadGroup256<4, T>};
    const GroupFn* const head_group = avx512 ? k512 : k256;  // [g - 1]: g heads at once
    per_head_group(kGroup, [&](int64_t t, int64_t h0, int64_t g, int64_t len, float* o,
                               std::vector<float>& scores, std::vector<float>& q_buf) {
      const float* q = QueryAsFloat(q_all + (t * a.n_heads + h0) * q_dim, g * q_dim, q_buf);
      head_group[g - 1](a, rows_of(t), len, q, o, scores);
    });
    return;
  }
  ctx.ParallelFor(a.n_tokens * a.n_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, q_buf, o_buf, row_buf(q_dim);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / a.n_heads;
      const int64_t h = task % a.n_heads;
      const float* q = QueryAsFloat(q_all + (t * a.n_heads + h) * q_dim, q_dim, q_buf);  // [576]
      T* out = out_all + (t * a.n_heads + h) * rank;
      float* o = OutAsFloat(out, rank, o_buf);  // [512]
      const SequenceRows<T> seq = rows_of(t);
      // Row j as float32: in place, or widened into row_buf.
      auto row = [&](int64_t j) { return QueryAsFloat(seq(j), q_dim, row_buf); };
      const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
      scores.resize(len);
      float max_score = -INFINITY;
      for (int64_t j = 0; j < len; ++j) {
        const float* r = row(j);
        // Two dots rather than one over 576 values: the same sums the reference forms.
        const float s = (Dot(q, r, rank) + Dot(q + rank, r + rank, a.rope_dim)) * a.softmax_scale;
        scores[j] = s;
        max_score = std::max(max_score, s);
      }
      SoftmaxRows<1>(scores.data(), len, &max_score);
      std::fill(o, o + rank, 0.0f);
      for (int64_t j = 0; j < len; ++j) Axpy(scores[j], row(j), o, rank);
      Finish(o, out, rank);
    }
  });
}

}  // namespace

void MlaAttention(const CpuContext& ctx, const MlaAttentionArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.n_heads >= 0);
  if (a.n_tokens == 0 || a.n_heads == 0) return;
  DSV2_CHECK_MSG(a.cache.dtype == ctx.act_dtype(),
                 "MlaAttention (CPU): the cache is in the activation dtype");
  DSV2_CHECK(a.q != nullptr && a.out != nullptr && a.positions != nullptr &&
             a.token_table != nullptr && a.block_tables != nullptr && a.cache.base != nullptr);
  DispatchAct(ctx.act_dtype(), [&](auto tag) { Attend<decltype(tag)>(ctx, a); });
}

}  // namespace dsv2::cpu
