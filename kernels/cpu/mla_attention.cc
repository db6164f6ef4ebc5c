#include "kernels/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"
#include "kernels/cpu/simd_exp.h"
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

// Scores of G heads against rows [j0, j0 + n) of a sequence: s[h * n + jj] = (q_lat[h] · c[j] +
// q_pe[h] · k_pe[j]) · scale, with 16-lane partial sums for the latent and the rope part of
// each head, reduced (the sums the reference forms, in another order). AVX-512, float32 query;
// kv_lora_rank and rope_dim multiples of 16.
template <int G, typename T>
DSV2_AVX512 void TileScores512(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t j0,
                               int64_t n, const void* qv, float* s) {
  const float* q = static_cast<const float*>(qv);
  const int64_t rank = a.kv_lora_rank, q_dim = rank + a.rope_dim;
  for (int64_t jj = 0; jj < n; ++jj) {
    const T* r = row(j0 + jj);
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
      s[h * n + jj] =
          (_mm512_reduce_add_ps(lat[h]) + _mm512_reduce_add_ps(pe[h])) * a.softmax_scale;
    }
  }
}

// TileScores512 with bf16 query and rows (kv_lora_rank and rope_dim multiples of 32): vdpbf16ps,
// the products of bf16 pairs exact in float32 as the FMAs on widened values are.
template <int G>
DSV2_AVX512BF16 void TileScoresDot(const MlaAttentionArgs& a, const SequenceRows<Bf16>& row,
                                   int64_t j0, int64_t n, const void* qv, float* s) {
  const uint16_t* qb = &static_cast<const Bf16*>(qv)->bits;
  const int64_t rank = a.kv_lora_rank, q_dim = rank + a.rope_dim;
  for (int64_t jj = 0; jj < n; ++jj) {
    const uint16_t* r = &row(j0 + jj)->bits;
    __m512 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm512_setzero_ps();
    for (int64_t k = 0; k < rank; k += 32) {
      const __m512bh rv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(r + k));
      for (int h = 0; h < G; ++h) {
        const __m512bh qh = reinterpret_cast<__m512bh>(_mm512_loadu_si512(qb + h * q_dim + k));
        lat[h] = _mm512_dpbf16_ps(lat[h], qh, rv);
      }
    }
    for (int64_t k = rank; k < q_dim; k += 32) {
      const __m512bh rv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(r + k));
      for (int h = 0; h < G; ++h) {
        const __m512bh qh = reinterpret_cast<__m512bh>(_mm512_loadu_si512(qb + h * q_dim + k));
        pe[h] = _mm512_dpbf16_ps(pe[h], qh, rv);
      }
    }
    for (int h = 0; h < G; ++h) {
      s[h * n + jj] =
          (_mm512_reduce_add_ps(lat[h]) + _mm512_reduce_add_ps(pe[h])) * a.softmax_scale;
    }
  }
}

// o[h] += Σ_jj p[h * n + jj] · c[j0 + jj] for G heads: 32 output columns of every head at a
// time in registers over the tile's rows (which sit in the cache by now).
template <int G, typename T>
DSV2_AVX512 void TileValues512(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t j0,
                               int64_t n, const float* p, float* o) {
  const int64_t rank = a.kv_lora_rank;
  for (int64_t k = 0; k < rank; k += 32) {
    const bool two = k + 16 < rank;
    __m512 lo[G], hi[G];
    for (int h = 0; h < G; ++h) {
      lo[h] = _mm512_loadu_ps(o + h * rank + k);
      hi[h] = two ? _mm512_loadu_ps(o + h * rank + k + 16) : _mm512_setzero_ps();
    }
    for (int64_t jj = 0; jj < n; ++jj) {
      const T* r = row(j0 + jj) + k;
      const __m512 r0 = Load16(r);
      const __m512 r1 = two ? Load16(r + 16) : _mm512_setzero_ps();
      for (int h = 0; h < G; ++h) {
        const __m512 w = _mm512_set1_ps(p[h * n + jj]);
        lo[h] = _mm512_fmadd_ps(w, r0, lo[h]);
        hi[h] = _mm512_fmadd_ps(w, r1, hi[h]);
      }
    }
    for (int h = 0; h < G; ++h) {
      _mm512_storeu_ps(o + h * rank + k, lo[h]);
      if (two) _mm512_storeu_ps(o + h * rank + k + 16, hi[h]);
    }
  }
}

DSV2_AVX2 inline float Sum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// TileScores512 in 8 lanes (kv_lora_rank and rope_dim multiples of 8).
template <int G, typename T>
DSV2_AVX2 void TileScores256(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t j0,
                             int64_t n, const void* qv, float* s) {
  const float* q = static_cast<const float*>(qv);
  const int64_t rank = a.kv_lora_rank, q_dim = rank + a.rope_dim;
  for (int64_t jj = 0; jj < n; ++jj) {
    const T* r = row(j0 + jj);
    __m256 lat[G], pe[G];
    for (int h = 0; h < G; ++h) lat[h] = pe[h] = _mm256_setzero_ps();
    for (int64_t k = 0; k < rank; k += 8) {
      const __m256 rv = Load8(r + k);
      for (int h = 0; h < G; ++h)
        lat[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * q_dim + k), rv, lat[h]);
    }
    for (int64_t k = rank; k < q_dim; k += 8) {
      const __m256 rv = Load8(r + k);
      for (int h = 0; h < G; ++h)
        pe[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * q_dim + k), rv, pe[h]);
    }
    for (int h = 0; h < G; ++h) s[h * n + jj] = (Sum8(lat[h]) + Sum8(pe[h])) * a.softmax_scale;
  }
}

// TileValues512 in 8 lanes, 16 output columns of every head at a time.
template <int G, typename T>
DSV2_AVX2 void TileValues256(const MlaAttentionArgs& a, const SequenceRows<T>& row, int64_t j0,
                             int64_t n, const float* p, float* o) {
  const int64_t rank = a.kv_lora_rank;
  for (int64_t k = 0; k < rank; k += 16) {
    const bool two = k + 8 < rank;
    __m256 lo[G], hi[G];
    for (int h = 0; h < G; ++h) {
      lo[h] = _mm256_loadu_ps(o + h * rank + k);
      hi[h] = two ? _mm256_loadu_ps(o + h * rank + k + 8) : _mm256_setzero_ps();
    }
    for (int64_t jj = 0; jj < n; ++jj) {
      const T* r = row(j0 + jj) + k;
      const __m256 r0 = Load8(r);
      const __m256 r1 = two ? Load8(r + 8) : _mm256_setzero_ps();
      for (int h = 0; h < G; ++h) {
        const __m256 w = _mm256_set1_ps(p[h * n + jj]);
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

// A split's running softmax per head (flash attention): the largest score m, the sum l of
// e^(s − m), and o = Σ e^(s − m) · c (unnormalised), over the rows seen so far.
struct PartialSoftmax {
  std::vector<float> m, l, o;  // [heads], [heads], [heads, rank]
  void Reset(int64_t heads, int64_t rank) {
    m.assign(heads, -INFINITY);
    l.assign(heads, 0.0f);
    o.assign(heads * rank, 0.0f);
  }
};

// s[j] = e^(s[j] − m) over j < n; returns their sum. One exp per head and cached row: in
// lanes (simd_exp.h, ~1 ulp) where the CPU has them.
DSV2_AVX512 float ExpShifted512(float* s, int64_t n, float m) {
  const __m512 mv = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = n - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 v = simd_exp::Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), mv));
    _mm512_mask_storeu_ps(s + j, k, v);
    sum = _mm512_mask_add_ps(sum, k, sum, v);
  }
  return _mm512_reduce_add_ps(sum);
}
DSV2_AVX2 float ExpShifted256(float* s, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = simd_exp::Exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, v);
    sum = _mm256_add_ps(sum, v);
  }
  float total = Sum8(sum);
  for (; j < n; ++j) total += (s[j] = std::exp(s[j] - m));
  return total;
}
float ExpShifted(CpuIsa isa, float* s, int64_t n, float m) {
  if (isa >= CpuIsa::kAvx512) return ExpShifted512(s, n, m);
  if (isa >= CpuIsa::kAvx2) return ExpShifted256(s, n, m);
  float total = 0.0f;
  for (int64_t j = 0; j < n; ++j) total += (s[j] = std::exp(s[j] - m));
  return total;
}

// Folds the scores s [g, n] of heads h0.. into the running softmax: rescales what it holds to
// the new maxima and turns s into the weights e^(s − m) of the tile's rows.
void FoldScores(CpuIsa isa, PartialSoftmax& st, int64_t h0, int64_t g, int64_t n, int64_t rank,
                float* s) {
  for (int64_t h = 0; h < g; ++h) {
    float* sh = s + h * n;
    float m = st.m[h0 + h];
    for (int64_t jj = 0; jj < n; ++jj) m = std::max(m, sh[jj]);
    const float correction = std::exp(st.m[h0 + h] - m);  // 0 for the first tile (−inf)
    const float sum = ExpShifted(isa, sh, n, m);
    st.l[h0 + h] = st.l[h0 + h] * correction + sum;
    st.m[h0 + h] = m;
    if (correction != 1.0f) {
      float* oh = st.o.data() + (h0 + h) * rank;
      for (int64_t k = 0; k < rank; ++k) oh[k] *= correction;
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

template <typename T>
using ScoresFn = void (*)(const MlaAttentionArgs&, const SequenceRows<T>&, int64_t j0, int64_t n,
                          const void* q, float* s);
template <typename T>
using ValuesFn = void (*)(const MlaAttentionArgs&, const SequenceRows<T>&, int64_t j0, int64_t n,
                          const float* p, float* o);
template <typename T>
struct TileKernels {
  const ScoresFn<T>* scores;  // [g - 1]: g heads at once
  const ValuesFn<T>* values;
  int64_t group;
  bool bf16_query;
};

constexpr int64_t kTileRows = 64;       // rows read once for every head, then reused from cache
constexpr int64_t kMinSplitRows = 512;  // a sequence is split across threads in spans this long

// Every head of a token in one pass over its rows (flash decoding): a tile of rows is read once
// from memory for all heads (scores, online softmax, values, group by group), and a long
// sequence is split across threads when there are fewer tokens than threads, the splits'
// partial softmaxes merged at the end.
template <typename T, typename RowsOf>
void TiledAttend(const CpuContext& ctx, const MlaAttentionArgs& a, const TileKernels<T>& k,
                 const RowsOf& rows_of) {
  const int64_t heads = a.n_heads, rank = a.kv_lora_rank, q_dim = rank + a.rope_dim;
  const T* q_all = static_cast<const T*>(a.q);
  T* out_all = static_cast<T*>(a.out);
  // Tasks: (token, split); first_task[t] is token t's first.
  std::vector<int64_t> first_task(a.n_tokens + 1, 0);
  const int64_t want = (ctx.num_threads() + a.n_tokens - 1) / a.n_tokens;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
    const int64_t splits = std::clamp<int64_t>(len / kMinSplitRows, 1, want);
    first_task[t + 1] = first_task[t] + splits;
  }
  const int64_t tasks = first_task[a.n_tokens];
  std::vector<PartialSoftmax> partial(tasks > a.n_tokens ? tasks : 0);
  ctx.ParallelFor(tasks, 1, [&](int64_t begin, int64_t end) {
    PartialSoftmax own;
    std::vector<float> s(k.group * kTileRows), q_buf, o_buf;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t =
          std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin() - 1;
      const int64_t splits = first_task[t + 1] - first_task[t], part = task - first_task[t];
      const int64_t len = static_cast<int64_t>(a.positions[t]) + 1;
      const int64_t j0 = len * part / splits, j1 = len * (part + 1) / splits;
      PartialSoftmax& st = splits > 1 ? partial[task] : own;
      st.Reset(heads, rank);
      const T* q_t = q_all + t * heads * q_dim;
      const char* q = k.bf16_query
                          ? reinterpret_cast<const char*>(q_t)
                          : reinterpret_cast<const char*>(QueryAsFloat(q_t, heads * q_dim, q_buf));
      const int64_t q_size = k.bf16_query ? 2 : 4;
      const SequenceRows<T> row = rows_of(t);
      for (int64_t jt = j0; jt < j1; jt += kTileRows) {
        const int64_t n = std::min(kTileRows, j1 - jt);
        for (int64_t h0 = 0; h0 < heads; h0 += k.group) {
          const int64_t g = std::min(k.group, heads - h0);
          k.scores[g - 1](a, row, jt, n, q + h0 * q_dim * q_size, s.data());
          FoldScores(ctx.isa(), st, h0, g, n, rank, s.data());
          k.values[g - 1](a, row, jt, n, s.data(), st.o.data() + h0 * rank);
        }
      }
      if (splits > 1) continue;
      T* out = out_all + t * heads * rank;
      float* o = OutAsFloat(out, heads * rank, o_buf);
      for (int64_t h = 0; h < heads; ++h) {
        const float inv = 1.0f / st.l[h];
        for (int64_t i = 0; i < rank; ++i) o[h * rank + i] = st.o[h * rank + i] * inv;
      }
      Finish(o, out, heads * rank);
    }
  });
  // The split tokens: o = Σ_s e^(m_s − M) o_s / Σ_s e^(m_s − M) l_s, M the largest m_s.
  std::vector<float> o_buf;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    if (first_task[t + 1] - first_task[t] == 1) continue;
    T* out = out_all + t * heads * rank;
    float* o = OutAsFloat(out, heads * rank, o_buf);
    for (int64_t h = 0; h < heads; ++h) {
      float m = -INFINITY, l = 0.0f;
      for (int64_t task = first_task[t]; task < first_task[t + 1]; ++task) {
        m = std::max(m, partial[task].m[h]);
      }
      std::fill(o + h * rank, o + (h + 1) * rank, 0.0f);
      for (int64_t task = first_task[t]; task < first_task[t + 1]; ++task) {
        const float w = std::exp(partial[task].m[h] - m);
        l += w * partial[task].l[h];
        Axpy(w, partial[task].o.data() + h * rank, o + h * rank, rank);
      }
      for (int64_t i = 0; i < rank; ++i) o[h * rank + i] /= l;
    }
    Finish(o, out, heads * rank);
  }
}

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
  // The tile kernels for this ISA and dtype: [g - 1] takes g heads at once.
  const ScoresFn<T>* scores_fn = nullptr;
  const ValuesFn<T>* values_fn = nullptr;
  int64_t group = 0;
  bool bf16_query = false;  // the scores read the bf16 query as it is (vdpbf16ps)
  if constexpr (std::is_same_v<T, Bf16>) {
    if (ctx.isa() >= CpuIsa::kAvx512Bf16 && a.kv_lora_rank % 32 == 0 && a.rope_dim % 32 == 0) {
      static constexpr ScoresFn<Bf16> kDot[] = {
          TileScoresDot<1>, TileScoresDot<2>, TileScoresDot<3>, TileScoresDot<4>,
          TileScoresDot<5>, TileScoresDot<6>, TileScoresDot<7>, TileScoresDot<8>};
      scores_fn = kDot;
      bf16_query = true;
    }
  }
  if (avx512) {
    static constexpr ScoresFn<T> kScores[] = {
        TileScores512<1, T>, TileScores512<2, T>, TileScores512<3, T>, TileScores512<4, T>,
        TileScores512<5, T>, TileScores512<6, T>, TileScores512<7, T>, TileScores512<8, T>};
    static constexpr ValuesFn<T> kValues[] = {
        TileValues512<1, T>, TileValues512<2, T>, TileValues512<3, T>, TileValues512<4, T>,
        TileValues512<5, T>, TileValues512<6, T>, TileValues512<7, T>, TileValues512<8, T>};
    if (scores_fn == nullptr) scores_fn = kScores;
    values_fn = kValues;
    group = 8;
  } else if (avx2) {  // 4 heads: AVX2's 16 registers
    static constexpr ScoresFn<T> kScores[] = {TileScores256<1, T>, TileScores256<2, T>,
                                              TileScores256<3, T>, TileScores256<4, T>};
    static constexpr ValuesFn<T> kValues[] = {TileValues256<1, T>, TileValues256<2, T>,
                                              TileValues256<3, T>, TileValues256<4, T>};
    scores_fn = kScores;
    values_fn = kValues;
    group = 4;
  }
  if (values_fn != nullptr) {
    TiledAttend<T>(ctx, a, {scores_fn, values_fn, group, bf16_query}, rows_of);
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
      float sum = 0.0f;
      for (int64_t j = 0; j < len; ++j) sum += (scores[j] = std::exp(scores[j] - max_score));
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < len; ++j) scores[j] *= inv;
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
