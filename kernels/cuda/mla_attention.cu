// CUDA twin of kernels/mla_attention.h: flash-decoding over the paged latent cache.
//
// Query token t attends to rows 0..positions[t] of its sequence. That range is cut into spans
// of `span` rows (chosen on the host from max_position, n_tokens and the SM count); one block
// of SplitKernel handles one (token, split, group of 16 heads). The attention is multi-query:
// all heads read the same rows, so the block streams its span through shared memory in tiles
// (cp.async, double-buffered) and uses every tile for all its heads:
//   scores [16, tile]  = q [16, row_dim] · tile [tile, row_dim]ᵀ · scale     (float32)
//   online softmax per head: running max m, running sum l, rescale alpha = exp(m_old − m_new)
//   o      [16, rank]  = o · alpha + p [16, tile] · tile [tile, :rank]      (float32)
// With one split the block writes o / l to `out` (rounded to the activation dtype once).
// Otherwise it writes the unnormalised o and (m, l) to workspace partials and MergeKernel
// combines the splits of each (token, head):
//   M = max_s m_s,   L = Σ_s l_s·exp(m_s − M),   out = Σ_s o_s·exp(m_s − M) / L.
// A split whose span starts after the token's position writes nothing: both kernels count the
// valid splits of a token with ValidSplits(). The last split runs to the token's own position
// whatever max_position said, so max_position sizes the work but never drops rows.
#include <cuda_pipeline.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/mla_attention.h"

namespace dsv2 {
namespace cuda {
namespace {

constexpr int kThreads = 256;    // SplitKernel: 8 warps
constexpr int kHeads = 16;       // heads per SplitKernel block (a head group)
constexpr int kMaxLatent = 512;  // kv_lora_rank the accumulators cover: 4 heads × 8 dims each
constexpr int kMergeThreads = 128;
constexpr int kMaxSplits = 256;                          // bounds MergeKernel's weights
constexpr int64_t kMinSpanRows = 64;                     // rows per split, at least
constexpr int64_t kMaxPartialBytes = int64_t{64} << 20;  // o_part + ml_part, at most
static_assert(kThreads == 256 && kHeads == 16, "the thread mappings below assume 256 × 16");
static_assert(kThreads / 64 * 4 == kHeads && 64 * 8 == kMaxLatent, "accumulator mapping");
static_assert(kThreads / kWarp * 2 == kHeads, "softmax: two heads per warp");

// Tile geometry per activation type: a tile holds kRows = 64 / sizeof(T) cache rows, the same
// bytes in both types (36 KiB for row_dim 576).
template <typename T>
struct Geom {
  static constexpr int kRows = 64 / static_cast<int>(sizeof(T));  // 32 bf16 / 16 float rows
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));   // elements per 16-byte copy
  // Scores: the [kHeads, kRows] tile is cut into 4×4 (head, row) micro tiles; kSlices adjacent
  // lanes share one micro tile, each summing every kSlices-th 4-wide chunk of the dot.
  static constexpr int kMicro = (kHeads / 4) * (kRows / 4);  // 32 / 16
  static constexpr int kSlices = kThreads / kMicro;          // 8 / 16
  static constexpr int kMicroPerWarp = kWarp / kSlices;      // 4 / 2
  static_assert(kMicro * kSlices == kThreads && kWarp % kSlices == 0, "score mapping");
  static_assert((kRows / 4) % kMicroPerWarp == 0, "a warp's micro tiles share their heads");
  static_assert(kRows <= kWarp, "softmax: one row per lane");
};

int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

template <typename T>
struct Params {
  const T* q;                   // [n_tokens, n_heads, row_dim]: q_lat | q_pe
  T* out;                       // [n_tokens, n_heads, latent]
  float* o_part;                // [n_tokens, n_splits, n_heads, latent_stride] (n_splits > 1)
  float2* ml_part;              // [n_tokens, n_splits, n_heads]: (m, l)        (n_splits > 1)
  const int32_t* positions;     // [n_tokens]
  const int32_t* token_table;   // [n_tokens]
  const int32_t* block_tables;  // [n_tables, max_pages]
  const T* cache;               // [num_pages, page_size, row_dim], pages page_stride apart
  int64_t page_stride;          // elements
  int64_t max_pages;
  int64_t span;  // rows per split, a multiple of Geom<T>::kRows
  int page_size;
  int n_heads;
  int head_groups;  // CeilDiv(n_heads, kHeads)
  int n_splits;
  int latent;         // kv_lora_rank
  int latent_stride;  // RoundUp(latent, 8): row stride of o_part
  int row_dim;        // latent + rope_dim
  int smem_stride;    // row stride of the shared tiles and of q_s (elements)
  float scale;
  bool vec_copy;  // cache rows can be copied in aligned 16-byte pieces
};

// Splits of a token at `pos` that hold rows: split s covers rows from s·span, so it is valid
// iff s·span <= pos. The one rule both kernels use.
__host__ __device__ inline int ValidSplits(int64_t pos, int64_t span, int n_splits) {
  if (pos < 0) return 0;
  const int64_t n = pos / span + 1;
  return n < n_splits ? static_cast<int>(n) : n_splits;
}

// Four consecutive values (8- or 16-byte aligned) as floats. bf16 → float is exact: the bits
// go to the high half (the element at the lower address is the low half of the word).
__device__ __forceinline__ void Load4(const float* p, float (&f)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  f[0] = v.x;
  f[1] = v.y;
  f[2] = v.z;
  f[3] = v.w;
}
__device__ __forceinline__ void Load4(const bf16* p, float (&f)[4]) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  f[0] = __uint_as_float(v.x << 16);
  f[1] = __uint_as_float(v.x & 0xffff0000u);
  f[2] = __uint_as_float(v.y << 16);
  f[3] = __uint_as_float(v.y & 0xffff0000u);
}

// Accumulator layout of SplitKernel: thread (tid / 64, g = tid % 64) owns heads 4·(tid / 64)
// .. +3 and eight latent dims: bf16 8g .. 8g+7 (one 16-byte load); float 4g .. 4g+3 and
// 256+4g .. 256+4g+3 (two 16-byte loads, adjacent lanes on adjacent 16 bytes).
template <typename T>
__device__ __forceinline__ int AccDim(int g, int e) {
  if constexpr (sizeof(T) == 2) {
    return 8 * g + e;
  } else {
    return e < 4 ? 4 * g + e : kMaxLatent / 2 + 4 * g + (e - 4);
  }
}

// The eight values of AccDim(g, 0..7) from a shared row; a piece is read only if it starts
// inside the latent part (ok0: the first four, ok1: the last four), else it reads as 0.
__device__ __forceinline__ void LoadAccDims(const float* row, int g, bool ok0, bool ok1,
                                            float (&v)[8]) {
  float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float b[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (ok0) Load4(row + 4 * g, a);
  if (ok1) Load4(row + kMaxLatent / 2 + 4 * g, b);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = a[e];
    v[4 + e] = b[e];
  }
}
__device__ __forceinline__ void LoadAccDims(const bf16* row, int g, bool ok0, bool /*ok1*/,
                                            float (&v)[8]) {
  if (!ok0) {
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = 0.0f;
    return;
  }
  const uint4 u = *reinterpret_cast<const uint4*>(row + 8 * g);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    v[2 * k] = __uint_as_float(w[k] << 16);
    v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Cache row j (j < 2^31: it is at most a position) of the sequence whose block table is
// `table`.
template <typename T>
__device__ __forceinline__ const T* CacheRow(const Params<T>& p, const int32_t* table, int j) {
  const int64_t page = table[j / p.page_size];
  return p.cache + page * p.page_stride + static_cast<int64_t>(j % p.page_size) * p.row_dim;
}

// Starts copying rows row0 .. min(row0 + kRows − 1, row_last) into dst [kRows, smem_stride]
// (columns 0 .. row_dim − 1; the padding columns are never written). 16-byte cp.async pieces
// when aligned, else plain element copies (odd test shapes).
template <typename T>
__device__ __forceinline__ void LoadTile(const Params<T>& p, const int32_t* table, int row0,
                                         int row_last, T* dst) {
  using G = Geom<T>;
  const int tid = static_cast<int>(threadIdx.x);
  const int n_rows = min(G::kRows, row_last - row0 + 1);
  if (p.vec_copy) {
    const int per_row = p.row_dim / G::kVec;
    for (int i = tid; i < n_rows * per_row; i += kThreads) {
      const int r = i / per_row;
      const int c = i - r * per_row;
      __pipeline_memcpy_async(dst + r * p.smem_stride + c * G::kVec,
                              CacheRow(p, table, row0 + r) + c * G::kVec, 16);
    }
  } else {
    for (int i = tid; i < n_rows * p.row_dim; i += kThreads) {
      const int r = i / p.row_dim;
      const int d = i - r * p.row_dim;
      dst[r * p.smem_stride + d] = CacheRow(p, table, row0 + r)[d];
    }
  }
}

// One block per (token, split, head group): blockIdx.x = (t · n_splits + split) · head_groups
// + group. 256 threads; dynamic shared memory, in this order:
//   kv      [2, kRows, smem_stride] T   double-buffered cache tile (pad columns zero)
//   q_s     [kHeads, smem_stride]  float  the group's queries (heads >= n_heads and pad zero)
//   p_s     [kRows, kHeads]        float  the tile's scores, then its probabilities
//   m_s, l_s, alpha_s [kHeads]     float  running max, running sum, this tile's rescale
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) SplitKernel(const Params<T> p) {
  using G = Geom<T>;
  DSV2_DYNAMIC_SHARED(unsigned char, smem);
  const int stride = p.smem_stride;
  T* kv = reinterpret_cast<T*>(smem);
  float* q_s = reinterpret_cast<float*>(smem + 2 * G::kRows * stride * sizeof(T));
  float* p_s = q_s + kHeads * stride;
  float* m_s = p_s + G::kRows * kHeads;
  float* l_s = m_s + kHeads;
  float* alpha_s = l_s + kHeads;

  const int tid = static_cast<int>(threadIdx.x);
  const int64_t bid = blockIdx.x;
  const int group = static_cast<int>(bid % p.head_groups);
  const int split = static_cast<int>(bid / p.head_groups % p.n_splits);
  const int64_t t = bid / p.head_groups / p.n_splits;
  const int h0 = group * kHeads;
  const int64_t pos = p.positions[t];

  if (split >= ValidSplits(pos, p.span, p.n_splits)) {
    // No rows in this span. The merge skips it; a single split (pos < 0: no rows at all) owns
    // the output, which gets zeros as in the CPU twin.
    if (p.n_splits == 1) {
      for (int i = tid; i < kHeads * p.latent; i += kThreads) {
        const int h = h0 + i / p.latent;
        if (h < p.n_heads) {
          p.out[(t * p.n_heads + h) * p.latent + i % p.latent] = FromFloat<T>(0.0f);
        }
      }
    }
    return;
  }
  // Rows row_begin .. row_last (inclusive), all <= pos < 2^31.
  const int row_begin = static_cast<int>(split * p.span);
  const int64_t row_end_max = row_begin + p.span - 1;  // end of a full span
  const int row_last = split == p.n_splits - 1
                           ? static_cast<int>(pos)
                           : static_cast<int>(pos < row_end_max ? pos : row_end_max);
  const int n_tiles = (row_last - row_begin) / G::kRows + 1;
  const int32_t* table = p.block_tables + static_cast<int64_t>(p.token_table[t]) * p.max_pages;

  LoadTile(p, table, row_begin, row_last, kv);
  __pipeline_commit();

  // Queries of the group in float32; zero for missing heads and the pad columns.
  const T* q = p.q + t * p.n_heads * p.row_dim;  // [n_heads, row_dim]
  for (int i = tid; i < kHeads * stride; i += kThreads) {
    const int hh = i / stride;
    const int d = i - hh * stride;
    const int h = h0 + hh;
    q_s[i] =
        h < p.n_heads && d < p.row_dim ? ToFloat(q[static_cast<int64_t>(h) * p.row_dim + d]) : 0.0f;
  }
  // Pad columns row_dim .. stride − 1 of both tile buffers: zero, so the 4-wide dot chunks
  // may run past row_dim. The copies never touch them.
  const int pad = stride - p.row_dim;
  for (int i = tid; i < 2 * G::kRows * pad; i += kThreads) {
    const int r = i / pad;
    kv[r * stride + p.row_dim + (i - r * pad)] = FromFloat<T>(0.0f);
  }
  if (tid < kHeads) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }

  const int lane = tid % kWarp;
  const int warp = tid / kWarp;
  // Scores: micro tile of heads s_head .. +3 × rows s_row .. +3, chunk slice `slice`.
  const int slice = lane % G::kSlices;
  const int micro = warp * G::kMicroPerWarp + lane / G::kSlices;
  const int s_head = micro / (G::kRows / 4) * 4;
  const int s_row = micro % (G::kRows / 4) * 4;
  const int n_chunks = (p.row_dim + 3) / 4;  // 4-wide chunks of a dot; < stride / 4
  // Accumulation: heads a_head .. +3, latent dims AccDim(a_g, 0..7).
  const int a_head = tid / 64 * 4;
  const int a_g = tid % 64;
  const bool a_ok0 = AccDim<T>(a_g, 0) < p.latent;
  const bool a_ok1 = AccDim<T>(a_g, 4) < p.latent;
  float acc[4][8];  // o[a_head + n][AccDim(a_g, e)], unnormalised
#pragma unroll
  for (int n = 0; n < 4; ++n) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[n][e] = 0.0f;
  }

  for (int it = 0; it < n_tiles; ++it) {
    const int row0 = row_begin + it * G::kRows;
    const T* cur = kv + (it & 1) * G::kRows * stride;  // [kRows, stride]
    if (it + 1 < n_tiles) {
      LoadTile(p, table, row0 + G::kRows, row_last, kv + ((it + 1) & 1) * G::kRows * stride);
    }
    __pipeline_commit();
    __pipeline_wait_prior(1);  // this thread's copies of tile `it` have landed
    __syncthreads();           // everyone's (and q_s, the pads, m_s, l_s on the first pass)
    const int n_valid = min(G::kRows, row_last - row0 + 1);

    // 1. Scores of the micro tile; rows past n_valid (stale data) become −inf.
    {
      float s[4][4];
#pragma unroll
      for (int n = 0; n < 4; ++n) {
#pragma unroll
        for (int m = 0; m < 4; ++m) s[n][m] = 0.0f;
      }
      const float* qb = q_s + s_head * stride;  // [4, stride]
      const T* kb = cur + s_row * stride;       // [4, stride]
#pragma unroll 1
      for (int c = slice; c < n_chunks; c += G::kSlices) {
        float qv[4][4];
        float kf[4][4];
#pragma unroll
        for (int n = 0; n < 4; ++n) Load4(qb + n * stride + 4 * c, qv[n]);
#pragma unroll
        for (int m = 0; m < 4; ++m) Load4(kb + m * stride + 4 * c, kf[m]);
#pragma unroll
        for (int n = 0; n < 4; ++n) {
#pragma unroll
          for (int m = 0; m < 4; ++m) {
#pragma unroll
            for (int k = 0; k < 4; ++k) s[n][m] = fmaf(qv[n][k], kf[m][k], s[n][m]);
          }
        }
      }
      // All kSlices lanes of the micro tile end with the full sums; they share the stores.
#pragma unroll
      for (int offset = G::kSlices / 2; offset > 0; offset /= 2) {
#pragma unroll
        for (int n = 0; n < 4; ++n) {
#pragma unroll
          for (int m = 0; m < 4; ++m) s[n][m] += __shfl_xor_sync(0xffffffffu, s[n][m], offset);
        }
      }
#pragma unroll
      for (int idx = 0; idx < 16; ++idx) {
        if (idx % G::kSlices == slice) {
          const int n = idx / 4;
          const int m = idx % 4;
          const int r = s_row + m;
          p_s[r * kHeads + s_head + n] = r < n_valid ? s[n][m] * p.scale : -INFINITY;
        }
      }
    }
    __syncthreads();

    // 2. Online softmax: warp w updates heads 2w and 2w+1, one row per lane.
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int h = warp * 2 + k;
      const float sc = lane < G::kRows ? p_s[lane * kHeads + h] : -INFINITY;
      const float m_old = m_s[h];
      const float m_new = fmaxf(m_old, WarpMax(sc));
      // n_valid >= 1: m_new is finite unless scores are infinite; keep exp() off (-inf) - (-inf).
      const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
      const float e = expf(sc - m_ref);  // masked rows: exp(−inf) = 0
      const float sum = WarpSum(e);
      if (lane < G::kRows) p_s[lane * kHeads + h] = e;
      __syncwarp();  // every lane has read m_s[h] before lane 0 rewrites it
      if (lane == 0) {
        const float alpha = expf(m_old - m_ref);  // first tile: exp(−inf) = 0
        alpha_s[h] = alpha;
        m_s[h] = m_new;
        l_s[h] = l_s[h] * alpha + sum;
      }
    }
    __syncthreads();

    // 3. o = o · alpha + Σ_j p[j] · row[j][:latent] over the valid rows.
    {
      float alpha[4];
#pragma unroll
      for (int n = 0; n < 4; ++n) alpha[n] = alpha_s[a_head + n];
#pragma unroll
      for (int n = 0; n < 4; ++n) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[n][e] *= alpha[n];
      }
      for (int j = 0; j < n_valid; ++j) {
        const float4 pj = *reinterpret_cast<const float4*>(p_s + j * kHeads + a_head);
        const float pw[4] = {pj.x, pj.y, pj.z, pj.w};
        float v[8];
        LoadAccDims(cur + j * stride, a_g, a_ok0, a_ok1, v);
#pragma unroll
        for (int n = 0; n < 4; ++n) {
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[n][e] = fmaf(pw[n], v[e], acc[n][e]);
        }
      }
    }
    __syncthreads();  // the buffer and p_s are free for the next pass
  }

  // Results of this thread's heads and dims; the last barrier made m_s and l_s final.
#pragma unroll
  for (int n = 0; n < 4; ++n) {
    const int hh = a_head + n;
    const int h = h0 + hh;
    if (h >= p.n_heads) continue;
    if (p.n_splits == 1) {
      const float inv = 1.0f / l_s[hh];
      T* o = p.out + (t * p.n_heads + h) * p.latent;  // [latent]
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int dim = AccDim<T>(a_g, e);
        if (dim < p.latent) o[dim] = FromFloat<T>(acc[n][e] * inv);
      }
    } else {
      // [latent_stride]; 16-byte pieces that start inside the latent part (the stride is a
      // multiple of 8, so a piece never runs past the row).
      float* o = p.o_part + ((t * p.n_splits + split) * p.n_heads + h) * p.latent_stride;
#pragma unroll
      for (int e = 0; e < 8; e += 4) {
        const int dim = AccDim<T>(a_g, e);
        if (dim < p.latent) {
          *reinterpret_cast<float4*>(o + dim) =
              make_float4(acc[n][e], acc[n][e + 1], acc[n][e + 2], acc[n][e + 3]);
        }
      }
    }
  }
  if (p.n_splits > 1 && tid < kHeads && h0 + tid < p.n_heads) {
    p.ml_part[(t * p.n_splits + split) * p.n_heads + h0 + tid] = make_float2(m_s[tid], l_s[tid]);
  }
}

// Reduces v over the block (kMergeThreads threads) with op; every thread gets the result.
// red: [kMergeThreads / 32]; reusable right after return.
template <typename Op>
__device__ float BlockReduce(float v, float* red, Op op) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < kMergeThreads / kWarp; ++w) r = op(r, red[w]);
  __syncthreads();
  return r;
}

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// One block per (token, head): blockIdx.x = t · n_heads + h. Combines the token's valid
// splits; no valid split (position < 0) gives zeros, as in the CPU twin.
template <typename T>
__global__ void __launch_bounds__(kMergeThreads) MergeKernel(const Params<T> p) {
  __shared__ float w_s[kMaxSplits];  // exp(m_s − M) per valid split
  __shared__ float red_s[kMergeThreads / kWarp];
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t t = blockIdx.x / p.n_heads;
  const int h = static_cast<int>(blockIdx.x % p.n_heads);
  const int n_valid = ValidSplits(p.positions[t], p.span, p.n_splits);
  const float2* ml = p.ml_part + t * p.n_splits * p.n_heads + h;  // split s at [s · n_heads]

  float m = -INFINITY;
  for (int s = tid; s < n_valid; s += kMergeThreads) {
    m = fmaxf(m, ml[static_cast<int64_t>(s) * p.n_heads].x);
  }
  m = BlockReduce(m, red_s, MaxOp());
  float l = 0.0f;
  for (int s = tid; s < n_valid; s += kMergeThreads) {
    const float2 v = ml[static_cast<int64_t>(s) * p.n_heads];
    const float w = expf(v.x - m);
    w_s[s] = w;
    l += v.y * w;
  }
  l = BlockReduce(l, red_s, SumOp());  // its barrier also publishes w_s
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;

  const int64_t split_stride = static_cast<int64_t>(p.n_heads) * p.latent_stride;
  const float* o = p.o_part + (t * p.n_splits * p.n_heads + h) * p.latent_stride;
  T* out = p.out + (t * p.n_heads + h) * p.latent;  // [latent]
  for (int c = tid; c < p.latent; c += kMergeThreads) {
    float acc = 0.0f;
    for (int s = 0; s < n_valid; ++s) acc = fmaf(w_s[s], o[s * split_stride + c], acc);
    out[c] = FromFloat<T>(acc * inv);
  }
}

// Rows per split: enough splits for about two waves of SplitKernel blocks, at least
// kMinSpanRows rows each, at most kMaxSplits splits and kMaxPartialBytes of partials.
// Depends on host-known sizes only.
int64_t SpanRows(int64_t len_max, int64_t n_tokens, int64_t n_heads, int64_t head_groups,
                 int64_t latent_stride, int sm_count, int tile_rows) {
  const int64_t target_blocks = 2 * static_cast<int64_t>(std::max(sm_count, 1));
  int64_t want = CeilDiv(target_blocks, n_tokens * head_groups);
  const int64_t bytes_per_split =
      n_tokens * n_heads *
      (latent_stride * static_cast<int64_t>(sizeof(float)) + static_cast<int64_t>(sizeof(float2)));
  want = std::min({want, static_cast<int64_t>(kMaxSplits),
                   std::max<int64_t>(1, kMaxPartialBytes / bytes_per_split)});
  return std::max(RoundUp(CeilDiv(len_max, want), tile_rows), kMinSpanRows);
}

template <typename T>
void Launch(CudaContext& ctx, const MlaAttentionArgs& a) {
  using G = Geom<T>;
  const LatentCacheLayerView& c = a.cache;
  const int64_t row_dim = c.row_dim;
  // Row stride of the shared tiles: a multiple of 16 plus 16 bytes, so that bf16 rows four
  // apart fall on the other half of the banks (the score loads of two micro tiles) and every
  // row starts 16-byte aligned; at least 4 pad columns for the 4-wide dot chunks.
  const int64_t stride = RoundUp(row_dim, 16) + G::kVec;
  const int64_t smem_bytes =
      2 * G::kRows * stride * static_cast<int64_t>(sizeof(T)) +
      (kHeads * stride + G::kRows * kHeads + 3 * kHeads) * static_cast<int64_t>(sizeof(float));
  int smem_optin = 0;
  DSV2_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                         ctx.info().device));
  DSV2_CHECK_MSG(smem_bytes <= smem_optin,
                 "MlaAttention (CUDA): row_dim too large for the shared-memory tiles");
  DSV2_CUDA_CHECK(cudaFuncSetAttribute(SplitKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem_bytes)));
  DSV2_CUDA_CHECK(cudaFuncSetAttribute(SplitKernel<T>,
                                       cudaFuncAttributePreferredSharedMemoryCarveout,
                                       cudaSharedmemCarveoutMaxShared));

  const int64_t head_groups = CeilDiv(a.n_heads, kHeads);
  const int64_t latent_stride = RoundUp(a.kv_lora_rank, 8);
  const int64_t len_max = static_cast<int64_t>(a.max_position) + 1;
  const int64_t span = SpanRows(len_max, a.n_tokens, a.n_heads, head_groups, latent_stride,
                                ctx.info().sm_count, G::kRows);
  const int64_t n_splits = CeilDiv(len_max, span);  // <= kMaxSplits
  const int64_t blocks = a.n_tokens * n_splits * head_groups;
  DSV2_CHECK_MSG(blocks <= INT_MAX && a.n_tokens * a.n_heads <= INT_MAX,
                 "MlaAttention (CUDA): too many tokens for one grid");

  Params<T> p;
  p.q = static_cast<const T*>(a.q);
  p.out = static_cast<T*>(a.out);
  p.o_part = nullptr;
  p.ml_part = nullptr;
  if (n_splits > 1) {
    Workspace& ws = ctx.workspace();
    p.o_part = ws.Alloc<float>(a.n_tokens * n_splits * a.n_heads * latent_stride);
    p.ml_part = ws.Alloc<float2>(a.n_tokens * n_splits * a.n_heads);
  }
  p.positions = a.positions;
  p.token_table = a.token_table;
  p.block_tables = a.block_tables;
  p.cache = static_cast<const T*>(c.base);
  p.page_stride = c.page_stride;
  p.max_pages = a.max_pages;
  p.span = span;
  p.page_size = static_cast<int>(c.page_size);
  p.n_heads = static_cast<int>(a.n_heads);
  p.head_groups = static_cast<int>(head_groups);
  p.n_splits = static_cast<int>(n_splits);
  p.latent = static_cast<int>(a.kv_lora_rank);
  p.latent_stride = static_cast<int>(latent_stride);
  p.row_dim = static_cast<int>(row_dim);
  p.smem_stride = static_cast<int>(stride);
  p.scale = a.softmax_scale;
  p.vec_copy = reinterpret_cast<uintptr_t>(c.base) % 16 == 0 &&
               (row_dim * static_cast<int64_t>(sizeof(T))) % 16 == 0 &&
               (c.page_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0;

  cudaStream_t stream = ctx.stream();
  DSV2_LAUNCH(static_cast<unsigned>(blocks), kThreads, static_cast<size_t>(smem_bytes), stream,
              SplitKernel<T>)
  (p);
  DSV2_CUDA_LAUNCH_CHECK();
  if (n_splits > 1) {
    DSV2_LAUNCH(static_cast<unsigned>(a.n_tokens * a.n_heads), kMergeThreads, 0, stream,
                MergeKernel<T>)
    (p);
    DSV2_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

void MlaAttention(CudaContext& ctx, const MlaAttentionArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.n_heads >= 0);
  if (a.n_tokens == 0 || a.n_heads == 0) return;
  const LatentCacheLayerView& c = a.cache;
  DSV2_CHECK_MSG(c.dtype == ctx.act_dtype(),
                 "MlaAttention (CUDA): the cache dtype is the activation dtype");
  DSV2_CHECK(a.q != nullptr && a.out != nullptr && a.positions != nullptr &&
             a.token_table != nullptr && a.block_tables != nullptr && c.base != nullptr);
  DSV2_CHECK(a.n_heads <= INT_MAX);
  DSV2_CHECK(a.kv_lora_rank >= 1 && a.rope_dim >= 0);
  DSV2_CHECK_MSG(a.kv_lora_rank <= kMaxLatent,
                 "MlaAttention (CUDA): kv_lora_rank above 512 is not supported");
  DSV2_CHECK(c.row_dim == a.kv_lora_rank + a.rope_dim);
  DSV2_CHECK(c.page_size >= 1 && c.page_size <= INT_MAX);
  DSV2_CHECK(c.page_stride >= c.page_size * c.row_dim);
  DSV2_CHECK(a.max_pages >= 1);
  DSV2_CHECK(a.max_position >= 0);
  DispatchAct(ctx.act_dtype(), [&](auto tag) { Launch<decltype(tag)>(ctx, a); });
}

}  // namespace cuda
}  // namespace dsv2
