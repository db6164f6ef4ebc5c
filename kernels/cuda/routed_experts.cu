// RoutedExperts on CUDA: the (token, slot) pairs are sorted by local expert on the device, two
// grouped GEMMs run over the sorted rows, and one fixed-order combine pass sums per token.
// In stream order, with no host round trip:
//   1. CountKernel: rows per local expert (int32 atomics: a count does not depend on order).
//   2. ScanKernel (one block): offsets = exclusive scan of the counts, and the tile table that
//      names, for each tile of kTileM sorted rows, its expert and first row (-1: no tile).
//   3. ScatterKernel (one block per expert): walks the slots in token order and gives the i-th
//      slot of expert e the sorted row offsets[e] + i, so the layout is deterministic.
//   4. Grouped GEMM 1: act[row] = silu(x[token] · gate_eᵀ) · (x[token] · up_eᵀ); the gate and up
//      tiles are computed by the same block and the SiLU·mul is its epilogue. The A loader reads
//      x[token(row)] directly, so the gather costs no copy of x.
//   5. Grouped GEMM 2: ys[row] = act[row] · down_eᵀ, rounded to T (the expert's output dtype).
//   6. CombineKernel (one block per token): out[t] = (out[t] or 0) + Σ weight · ys[row] over the
//      token's local slots in ascending expert id, in float32, rounded to T once.
// Each GEMM block finds its (expert, row tile) in the tile table; the grid is sized from an
// upper bound on the tile count and surplus blocks exit. bf16 runs use tensor cores (wmma,
// 16×16×16 bf16 fragments, fp32 accumulators); float32 runs a SIMT kernel with exact fp32 FMA.
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "kernels/check.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/routed_experts.h"
#include "kernels/silu_mul.h"

namespace dsv2 {
namespace cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kTileM = 64;          // sorted rows per GEMM tile (both kernels)
constexpr int kTileN = 64;          // output features per GEMM tile
constexpr int kScanThreads = 1024;  // ScanKernel: one thread per local expert
constexpr int kScatterThreads = 256;
constexpr int kCountThreads = 256;
constexpr int kCombineThreads = 256;
constexpr int kMaxTopK = 64;  // CombineKernel sorts a token's slots in shared memory

// ---- Sorting the slots by expert ----------------------------------------------------------

// The local index of global expert `id`, or -1 when the slot is not ours.
__device__ __forceinline__ int LocalExpert(int32_t id, int64_t expert_begin, int n_local) {
  const int64_t e = static_cast<int64_t>(id) - expert_begin;
  return (id >= 0 && e >= 0 && e < n_local) ? static_cast<int>(e) : -1;
}

// counts[e] += 1 for each slot of local expert e. counts: [n_local], zeroed before.
__global__ void CountKernel(const int32_t* __restrict__ expert, int slots, int64_t expert_begin,
                            int n_local, int32_t* __restrict__ counts) {
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= slots) return;
  const int e = LocalExpert(expert[s], expert_begin, n_local);
  if (e >= 0) atomicAdd(&counts[e], 1);
}

// One block of kScanThreads (32 warps); thread e < n_local owns expert e.
// offsets: [n_local + 1]; tile_expert, tile_row: [max_tiles].
__global__ void __launch_bounds__(kScanThreads)
    ScanKernel(const int32_t* __restrict__ counts, int n_local, int max_tiles,
               int32_t* __restrict__ offsets, int32_t* __restrict__ tile_expert,
               int32_t* __restrict__ tile_row) {
  __shared__ int s_rows[32];   // per warp: inclusive row total, then its scan
  __shared__ int s_tiles[32];  // per warp: inclusive tile total, then its scan
  const int e = threadIdx.x, lane = e & 31, warp = e >> 5;
  const int count = e < n_local ? counts[e] : 0;
  const int tiles = (count + kTileM - 1) / kTileM;
  int rows_incl = count, tiles_incl = tiles;  // inclusive scans over experts
  for (int o = 1; o < 32; o <<= 1) {
    const int r = __shfl_up_sync(kFullMask, rows_incl, o);
    const int t = __shfl_up_sync(kFullMask, tiles_incl, o);
    if (lane >= o) rows_incl += r, tiles_incl += t;
  }
  if (lane == 31) s_rows[warp] = rows_incl, s_tiles[warp] = tiles_incl;
  __syncthreads();
  if (warp == 0) {
    int r = s_rows[lane], t = s_tiles[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const int r2 = __shfl_up_sync(kFullMask, r, o);
      const int t2 = __shfl_up_sync(kFullMask, t, o);
      if (lane >= o) r += r2, t += t2;
    }
    s_rows[lane] = r, s_tiles[lane] = t;
  }
  __syncthreads();
  if (warp > 0) rows_incl += s_rows[warp - 1], tiles_incl += s_tiles[warp - 1];
  const int total_tiles = s_tiles[31];
  if (e < n_local) {
    if (e == 0) offsets[0] = 0;
    offsets[e + 1] = rows_incl;
    const int row_begin = rows_incl - count, tile_begin = tiles_incl - tiles;
    for (int j = 0; j < tiles && tile_begin + j < max_tiles; ++j) {
      tile_expert[tile_begin + j] = e;
      tile_row[tile_begin + j] = row_begin + j * kTileM;
    }
  }
  for (int j = total_tiles + e; j < max_tiles; j += kScanThreads) tile_expert[j] = -1;
}

// Block e walks the slots in order and numbers those of expert e: the i-th gets sorted row
// offsets[e] + i. row_slot: [slots] (sorted row → slot); slot_row: [slots] (slot → sorted row),
// preset to -1 so that slots of no local expert stay -1.
__global__ void __launch_bounds__(kScatterThreads)
    ScatterKernel(const int32_t* __restrict__ expert, int slots, int64_t expert_begin, int n_local,
                  const int32_t* __restrict__ offsets, int32_t* __restrict__ row_slot,
                  int32_t* __restrict__ slot_row) {
  constexpr int kWarps = kScatterThreads / 32;
  __shared__ int s_warp_count[kWarps];
  const int e = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row_begin = offsets[e], count = offsets[e + 1] - row_begin;
  int found = 0;  // slots of expert e numbered so far: the same in every thread
  for (int base = 0; base < slots && found < count; base += kScatterThreads) {
    const int s = base + static_cast<int>(threadIdx.x);
    const bool mine = s < slots && LocalExpert(expert[s], expert_begin, n_local) == e;
    const unsigned ballot = __ballot_sync(kFullMask, mine);
    if (lane == 0) s_warp_count[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;  // this chunk's slots of e in lower warps, and in all warps
    for (int w = 0; w < kWarps; ++w) {
      before += w < warp ? s_warp_count[w] : 0;
      total += s_warp_count[w];
    }
    if (mine) {
      const int row = row_begin + found + before + __popc(ballot & ((1u << lane) - 1u));
      row_slot[row] = s;
      slot_row[s] = row;
    }
    found += total;
    __syncthreads();  // s_warp_count is rewritten by the next chunk
  }
}

// ---- Grouped GEMM -------------------------------------------------------------------------

// out[row, :n] = A[row, :k] · B_eᵀ for the sorted rows of each expert e (gated: two B matrices,
// gate and up, and out = silu(round(A·gateᵀ)) · round(A·upᵀ)).
template <typename T>
struct GemmParams {
  const T* a = nullptr;             // A rows, k elements each: x [n_tokens, k] or act [rows, k]
  const int32_t* a_slot = nullptr;  // [rows] sorted row → slot; A row = slot / top_k (the token)
                                    // when set, else A row = sorted row
  int top_k = 1;
  const T* b0 = nullptr;  // expert 0's [n, k] matrix: gate (gated) or down
  const T* b1 = nullptr;  // expert 0's up [n, k] (gated only)
  int64_t b0_stride = 0;  // elements between consecutive experts' matrices
  int64_t b1_stride = 0;
  int n = 0;                             // output features
  int k = 0;                             // reduction length
  const int32_t* tile_expert = nullptr;  // [max_tiles] expert of each row tile, or -1
  const int32_t* tile_row = nullptr;     // [max_tiles] first sorted row of each tile
  const int32_t* offsets = nullptr;      // [n_local + 1] first sorted row of each expert
  T* out = nullptr;                      // [rows, n]
};

// This block's row tile: false when it has none (the grid is an upper bound).
template <typename T>
__device__ __forceinline__ bool FindTile(const GemmParams<T>& p, int& e, int& row0, int& row_end) {
  e = p.tile_expert[blockIdx.x];
  if (e < 0) return false;
  row0 = p.tile_row[blockIdx.x];
  row_end = min(row0 + kTileM, p.offsets[e + 1]);
  return true;
}

// The A row of sorted row `row`, or nullptr past the tile's end.
template <typename T>
__device__ __forceinline__ const T* ARow(const GemmParams<T>& p, int row, int row_end) {
  if (row >= row_end) return nullptr;
  const int64_t r = p.a_slot != nullptr ? p.a_slot[row] / p.top_k : row;
  return p.a + r * p.k;
}

// Row `col` of expert e's matrix (base: expert 0's), or nullptr past n.
template <typename T>
__device__ __forceinline__ const T* BRow(const GemmParams<T>& p, const T* base, int64_t stride,
                                         int e, int col) {
  if (col >= p.n) return nullptr;
  return base + e * stride + static_cast<int64_t>(col) * p.k;
}

// 16 bytes of `row` from element k0 (8 bf16 or 4 floats); zeros past k or for a null row.
// kVec: k is a multiple of the chunk and rows are 16-byte aligned, so a chunk is all in or out.
template <typename T, bool kVec>
__device__ __forceinline__ uint4 LoadChunk(const T* row, int k0, int k) {
  using Bits = typename std::conditional<sizeof(T) == 2, unsigned short, unsigned int>::type;
  constexpr int kElems = 16 / static_cast<int>(sizeof(T));
  union {
    uint4 v;
    Bits e[kElems];
  } u;
  u.v = make_uint4(0u, 0u, 0u, 0u);
  if (row == nullptr) return u.v;
  if constexpr (kVec) {
    if (k0 < k) u.v = __ldg(reinterpret_cast<const uint4*>(row + k0));
  } else {
    const Bits* r = reinterpret_cast<const Bits*>(row);
#pragma unroll
    for (int j = 0; j < kElems; ++j) {
      if (k0 + j < k) u.e[j] = __ldg(r + k0 + j);
    }
  }
  return u.v;
}

// The output element from the fp32 accumulators: gated, the reference rounds gate and up to T
// before silu·mul; otherwise the expert's output is rounded to T.
template <typename T, bool kGated>
__device__ __forceinline__ T Finish(float v0, float v1) {
  if constexpr (kGated) {
    return FromFloat<T>(SiluTimes(RoundTo<T>(v0), RoundTo<T>(v1)));
  } else {
    return FromFloat<T>(v0);
  }
}

// bf16 on tensor cores. Block: 128 threads = 4 warps in 2 × 2, each warp 32 rows × 32 features
// of every B matrix (2 × 2 fragments each). K advances 32 at a time through double-buffered
// shared memory: the next step's chunks are loaded into registers while this step computes.
constexpr int kWmmaThreads = 128;
constexpr int kWmmaK = 32;
constexpr int kWmmaLd = kWmmaK + 8;  // shared row pitch: 80 bytes, 16-byte aligned, no conflicts
static_assert(kWmmaThreads / 4 * 2 == kTileM && kTileM == kTileN, "2 chunks per row per thread");

template <bool kGated, bool kVec>
__global__ void __launch_bounds__(kWmmaThreads) GroupedGemmBf16(const GemmParams<bf16> p) {
  constexpr int kB = kGated ? 2 : 1;                           // B matrices per block
  __shared__ __align__(128) bf16 s_a[2][kTileM][kWmmaLd];      // [buffer][row][k]
  __shared__ __align__(128) bf16 s_b[kB][2][kTileN][kWmmaLd];  // [matrix][buffer][feature][k]
  __shared__ __align__(128) float s_stage[kWmmaThreads / 32][kB][16 * 16];  // per warp, epilogue

  int e, row0, row_end;
  if (!FindTile(p, e, row0, row_end)) return;
  const int n0 = blockIdx.y * kTileN;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp >> 1, wn = warp & 1;  // the warp's quadrant

  // Loading: thread tid moves elements [lk, lk + 8) of rows lr and lr + 32 of each tile.
  const int lr = tid >> 2, lk = (tid & 3) * 8;
  const bf16* a_row[2];
  const bf16* b_row[kB][2];
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    a_row[c] = ARow(p, row0 + lr + 32 * c, row_end);
    b_row[0][c] = BRow(p, p.b0, p.b0_stride, e, n0 + lr + 32 * c);
    if constexpr (kGated) b_row[kB - 1][c] = BRow(p, p.b1, p.b1_stride, e, n0 + lr + 32 * c);
  }
  uint4 ra[2], rb[kB][2];  // the next K step in registers
  auto fetch = [&](int k0) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      ra[c] = LoadChunk<bf16, kVec>(a_row[c], k0 + lk, p.k);
#pragma unroll
      for (int m = 0; m < kB; ++m) rb[m][c] = LoadChunk<bf16, kVec>(b_row[m][c], k0 + lk, p.k);
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      *reinterpret_cast<uint4*>(&s_a[buf][lr + 32 * c][lk]) = ra[c];
#pragma unroll
      for (int m = 0; m < kB; ++m)
        *reinterpret_cast<uint4*>(&s_b[m][buf][lr + 32 * c][lk]) = rb[m][c];
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kB][2][2];
#pragma unroll
  for (int m = 0; m < kB; ++m) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[m][i][j], 0.0f);
    }
  }
  const int k_steps = (p.k + kWmmaK - 1) / kWmmaK;
  if (k_steps > 0) {
    fetch(0);
    stash(0);
  }
  __syncthreads();
  for (int ks = 0; ks < k_steps; ++ks) {
    const int buf = ks & 1;
    if (ks + 1 < k_steps) fetch((ks + 1) * kWmmaK);
#pragma unroll
    for (int kk = 0; kk < kWmmaK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(fa[i], &s_a[buf][wm * 32 + i * 16][kk], kWmmaLd);
#pragma unroll
      for (int m = 0; m < kB; ++m) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          // B(k, feature) = W[feature, k]: W's rows in shared memory are B's columns.
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
          wmma::load_matrix_sync(fb, &s_b[m][buf][wn * 32 + j * 16][kk], kWmmaLd);
#pragma unroll
          for (int i = 0; i < 2; ++i) wmma::mma_sync(acc[m][i][j], fa[i], fb, acc[m][i][j]);
        }
      }
    }
    if (ks + 1 < k_steps) stash(buf ^ 1);  // that buffer was last read before the last barrier
    __syncthreads();
  }

  // Epilogue: each 16 × 16 fragment goes through the warp's staging tile to be finished per
  // element (the accumulator layout is opaque) and stored with bounds checks.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int m = 0; m < kB; ++m) {
        wmma::store_matrix_sync(s_stage[warp][m], acc[m][i][j], 16, wmma::mem_row_major);
      }
      __syncwarp();
      for (int idx = lane; idx < 16 * 16; idx += 32) {
        const int row = row0 + wm * 32 + i * 16 + idx / 16;
        const int col = n0 + wn * 32 + j * 16 + idx % 16;
        if (row < row_end && col < p.n) {
          p.out[static_cast<int64_t>(row) * p.n + col] =
              Finish<bf16, kGated>(s_stage[warp][0][idx], s_stage[warp][kB - 1][idx]);
        }
      }
      __syncwarp();
    }
  }
}

// float32: SIMT, exact fp32 FMA in ascending k (no TF32). Block: 256 threads = 16 × 16, each
// 4 rows × 4 features of every B matrix. K advances 16 at a time; tiles are stored k-major in
// shared memory so that a thread reads its 4 rows and 4 features as two float4.
constexpr int kSimtThreads = 256;
constexpr int kSimtK = 16;
constexpr int kSimtLd = kTileM + 4;  // shared row pitch (floats): keeps float4 alignment
static_assert(kSimtThreads / 4 == kTileM && kSimtK == 4 * 4, "one chunk of 4 per thread");

template <bool kGated, bool kVec>
__global__ void __launch_bounds__(kSimtThreads) GroupedGemmF32(const GemmParams<float> p) {
  constexpr int kB = kGated ? 2 : 1;
  __shared__ __align__(16) float s_a[2][kSimtK][kSimtLd];      // [buffer][k][row]
  __shared__ __align__(16) float s_b[kB][2][kSimtK][kSimtLd];  // [matrix][buffer][k][feature]

  int e, row0, row_end;
  if (!FindTile(p, e, row0, row_end)) return;
  const int n0 = blockIdx.y * kTileN;
  const int tid = threadIdx.x;
  const int lr = tid >> 2, lk = (tid & 3) * 4;  // loading: elements [lk, lk + 4) of row lr
  const int ty = tid >> 4, tx = tid & 15;       // computing: rows ty·4.., features tx·4..

  const float* a_row = ARow(p, row0 + lr, row_end);
  const float* b_row[kB];
  b_row[0] = BRow(p, p.b0, p.b0_stride, e, n0 + lr);
  if constexpr (kGated) b_row[kB - 1] = BRow(p, p.b1, p.b1_stride, e, n0 + lr);
  uint4 ra, rb[kB];
  auto fetch = [&](int k0) {
    ra = LoadChunk<float, kVec>(a_row, k0 + lk, p.k);
#pragma unroll
    for (int m = 0; m < kB; ++m) rb[m] = LoadChunk<float, kVec>(b_row[m], k0 + lk, p.k);
  };
  auto put = [&](float(*dst)[kSimtLd], uint4 v) {  // transposed: dst[k][row]
    dst[lk + 0][lr] = __uint_as_float(v.x);
    dst[lk + 1][lr] = __uint_as_float(v.y);
    dst[lk + 2][lr] = __uint_as_float(v.z);
    dst[lk + 3][lr] = __uint_as_float(v.w);
  };
  auto stash = [&](int buf) {
    put(s_a[buf], ra);
#pragma unroll
    for (int m = 0; m < kB; ++m) put(s_b[m][buf], rb[m]);
  };

  float acc[kB][4][4];
#pragma unroll
  for (int m = 0; m < kB; ++m) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[m][i][j] = 0.0f;
    }
  }
  const int k_steps = (p.k + kSimtK - 1) / kSimtK;
  if (k_steps > 0) {
    fetch(0);
    stash(0);
  }
  __syncthreads();
  for (int ks = 0; ks < k_steps; ++ks) {
    const int buf = ks & 1;
    if (ks + 1 < k_steps) fetch((ks + 1) * kSimtK);
#pragma unroll
    for (int kk = 0; kk < kSimtK; ++kk) {
      const float4 av = *reinterpret_cast<const float4*>(&s_a[buf][kk][ty * 4]);
      const float a[4] = {av.x, av.y, av.z, av.w};
#pragma unroll
      for (int m = 0; m < kB; ++m) {
        const float4 bv = *reinterpret_cast<const float4*>(&s_b[m][buf][kk][tx * 4]);
        const float b[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[m][i][j] = fmaf(a[i], b[j], acc[m][i][j]);
        }
      }
    }
    if (ks + 1 < k_steps) stash(buf ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = row0 + ty * 4 + i;
    if (row >= row_end) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = n0 + tx * 4 + j;
      if (col < p.n) {
        p.out[static_cast<int64_t>(row) * p.n + col] =
            Finish<float, kGated>(acc[0][i][j], acc[kB - 1][i][j]);
      }
    }
  }
}

// ---- Combine ------------------------------------------------------------------------------

// Block t: out[t] = (accumulate ? out[t] : 0) + Σ weight · ys[row] over the token's local slots
// in ascending expert id (slot order among equal ids), in float32, rounded to T once.
// ys: [rows, hidden]; out: [n_tokens, hidden].
template <typename T>
__global__ void __launch_bounds__(kCombineThreads)
    CombineKernel(const int32_t* __restrict__ expert, const float* __restrict__ weight,
                  const int32_t* __restrict__ slot_row, int top_k, const T* __restrict__ ys,
                  int hidden, bool accumulate, T* __restrict__ out) {
  __shared__ int s_id[kMaxTopK];
  __shared__ int s_row[kMaxTopK];
  __shared__ float s_w[kMaxTopK];
  __shared__ int s_n;
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {  // insertion sort of the token's local slots by expert id (stable)
    int n = 0;
    for (int k = 0; k < top_k; ++k) {
      const int64_t s = t * top_k + k;
      const int row = slot_row[s];
      if (row < 0) continue;
      const int id = expert[s];
      int i = n++;
      for (; i > 0 && s_id[i - 1] > id; --i) {
        s_id[i] = s_id[i - 1];
        s_row[i] = s_row[i - 1];
        s_w[i] = s_w[i - 1];
      }
      s_id[i] = id;
      s_row[i] = row;
      s_w[i] = weight[s];
    }
    s_n = n;
  }
  __syncthreads();
  const int n = s_n;
  T* o = out + t * hidden;
  for (int j = threadIdx.x; j < hidden; j += kCombineThreads) {
    float sum = accumulate ? ToFloat(o[j]) : 0.0f;
    for (int i = 0; i < n; ++i)
      sum += s_w[i] * ToFloat(ys[static_cast<int64_t>(s_row[i]) * hidden + j]);
    o[j] = FromFloat<T>(sum);
  }
}

// ---- Host side ----------------------------------------------------------------------------

// Elements between expert e and e + 1 for one matrix kind, checked to be the same for all.
int64_t EvenStride(const RoutedExpertsArgs& a, WeightView MlpWeights::*m, int64_t elem) {
  if (a.n_local == 1) return 0;
  const char* base = static_cast<const char*>((a.experts[0].*m).data);
  const int64_t bytes = static_cast<const char*>((a.experts[1].*m).data) - base;
  DSV2_CHECK_MSG(bytes % elem == 0, "RoutedExperts (CUDA): expert spacing is not whole elements");
  for (int64_t e = 0; e < a.n_local; ++e) {
    DSV2_CHECK_MSG(static_cast<const char*>((a.experts[e].*m).data) == base + e * bytes,
                   "RoutedExperts (CUDA): each matrix kind of the local experts must be evenly "
                   "spaced in memory");
  }
  return bytes / elem;
}

void CheckMatrix(const WeightView& w, DType act, int64_t rows, int64_t cols) {
  DSV2_CHECK_MSG(w.dtype == act,
                 "RoutedExperts (CUDA): expert weights must be in the activation dtype");
  DSV2_CHECK_MSG(w.rows == rows && w.cols == cols && w.row_stride == cols,
                 "RoutedExperts (CUDA): expert matrices must be dense [width, hidden] (gate, "
                 "up) and [hidden, width] (down), the same for every expert");
  DSV2_CHECK(w.data != nullptr || rows * cols == 0);
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, bool kGated, bool kVec>
void LaunchGemmAs(const GemmParams<T>& p, int max_tiles, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(max_tiles), static_cast<unsigned>(CeilDiv(p.n, kTileN)));
  if constexpr (std::is_same_v<T, bf16>) {
    DSV2_LAUNCH(grid, kWmmaThreads, 0, stream, GroupedGemmBf16<kGated, kVec>)(p);
  } else {
    DSV2_LAUNCH(grid, kSimtThreads, 0, stream, GroupedGemmF32<kGated, kVec>)(p);
  }
  DSV2_CUDA_LAUNCH_CHECK();
}

// vec: every A and B row is 16-byte aligned and k is a multiple of the 16-byte chunk.
template <typename T, bool kGated>
void LaunchGemm(const GemmParams<T>& p, bool vec, int max_tiles, cudaStream_t stream) {
  DSV2_CHECK_MSG(CeilDiv(p.n, kTileN) <= 65535, "RoutedExperts (CUDA): too many features");
  if (vec) {
    LaunchGemmAs<T, kGated, true>(p, max_tiles, stream);
  } else {
    LaunchGemmAs<T, kGated, false>(p, max_tiles, stream);
  }
}

template <typename T>
void Run(CudaContext& ctx, const RoutedExpertsArgs& a, int64_t width, int64_t gate_stride,
         int64_t up_stride, int64_t down_stride) {
  cudaStream_t stream = ctx.stream();
  Workspace& ws = ctx.workspace();
  const int n_local = static_cast<int>(a.n_local);
  const int slots = static_cast<int>(a.n_tokens * a.top_k);
  // Σ_e ceil(m_e / kTileM) ≤ ceil(slots / kTileM) + n_local, and ≤ Σ_e m_e ≤ slots.
  const int max_tiles =
      static_cast<int>(std::min<int64_t>(CeilDiv(slots, kTileM) + n_local, slots));

  int32_t* counts = ws.Alloc<int32_t>(n_local);                 // [n_local]
  int32_t* offsets = ws.Alloc<int32_t>(n_local + 1);            // [n_local + 1]
  int32_t* tile_expert = ws.Alloc<int32_t>(max_tiles);          // [max_tiles]
  int32_t* tile_row = ws.Alloc<int32_t>(max_tiles);             // [max_tiles]
  int32_t* row_slot = ws.Alloc<int32_t>(slots);                 // [slots] sorted row → slot
  int32_t* slot_row = ws.Alloc<int32_t>(slots);                 // [slots] slot → sorted row or -1
  T* act = ws.Alloc<T>(static_cast<int64_t>(slots) * width);    // [slots, width]
  T* ys = ws.Alloc<T>(static_cast<int64_t>(slots) * a.hidden);  // [slots, hidden]

  DSV2_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int32_t) * n_local, stream));
  DSV2_CUDA_CHECK(cudaMemsetAsync(slot_row, 0xff, sizeof(int32_t) * slots, stream));  // -1
  DSV2_LAUNCH(static_cast<unsigned>(CeilDiv(slots, kCountThreads)), kCountThreads, 0, stream,
              CountKernel)
  (a.expert, slots, a.expert_begin, n_local, counts);
  DSV2_CUDA_LAUNCH_CHECK();
  DSV2_LAUNCH(1, kScanThreads, 0, stream, ScanKernel)
  (counts, n_local, max_tiles, offsets, tile_expert, tile_row);
  DSV2_CUDA_LAUNCH_CHECK();
  DSV2_LAUNCH(n_local, kScatterThreads, 0, stream, ScatterKernel)
  (a.expert, slots, a.expert_begin, n_local, offsets, row_slot, slot_row);
  DSV2_CUDA_LAUNCH_CHECK();

  constexpr int64_t kChunk = 16 / static_cast<int64_t>(sizeof(T));  // elements per 16 bytes
  const MlpWeights& e0 = a.experts[0];
  GemmParams<T> p;
  p.tile_expert = tile_expert;
  p.tile_row = tile_row;
  p.offsets = offsets;
  if (width > 0) {  // act = silu(x · gateᵀ) · (x · upᵀ), x rows gathered by token
    p.a = static_cast<const T*>(a.x);
    p.a_slot = row_slot;
    p.top_k = static_cast<int>(a.top_k);
    p.b0 = static_cast<const T*>(e0.gate.data);
    p.b1 = static_cast<const T*>(e0.up.data);
    p.b0_stride = gate_stride;
    p.b1_stride = up_stride;
    p.n = static_cast<int>(width);
    p.k = static_cast<int>(a.hidden);
    p.out = act;
    const bool vec = a.hidden % kChunk == 0 && gate_stride % kChunk == 0 &&
                     up_stride % kChunk == 0 && Aligned16(p.a) && Aligned16(p.b0) &&
                     Aligned16(p.b1);
    LaunchGemm<T, true>(p, vec, max_tiles, stream);
  }
  // ys = act · downᵀ (k = 0 when width == 0: ys = 0, as on the CPU).
  p.a = act;
  p.a_slot = nullptr;
  p.top_k = 1;
  p.b0 = static_cast<const T*>(e0.down.data);
  p.b1 = nullptr;
  p.b0_stride = down_stride;
  p.b1_stride = 0;
  p.n = static_cast<int>(a.hidden);
  p.k = static_cast<int>(width);
  p.out = ys;
  const bool vec =
      width % kChunk == 0 && down_stride % kChunk == 0 && Aligned16(p.a) && Aligned16(p.b0);
  LaunchGemm<T, false>(p, vec, max_tiles, stream);

  DSV2_LAUNCH(static_cast<unsigned>(a.n_tokens), kCombineThreads, 0, stream, CombineKernel<T>)
  (a.expert, a.weight, slot_row, static_cast<int>(a.top_k), ys, static_cast<int>(a.hidden),
   a.accumulate, static_cast<T*>(a.out));
  DSV2_CUDA_LAUNCH_CHECK();
}

}  // namespace

void RoutedExperts(CudaContext& ctx, const RoutedExpertsArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.top_k >= 0 && a.hidden >= 0 && a.n_local >= 0);
  if (a.n_tokens == 0 || a.hidden == 0) return;
  DSV2_CHECK(a.out != nullptr);
  const DType act = ctx.act_dtype();
  const int64_t elem = DTypeSize(act);
  if (a.n_local == 0 || a.top_k == 0) {  // no local slot: out = 0, or out unchanged
    if (!a.accumulate) {
      DSV2_CUDA_CHECK(cudaMemsetAsync(a.out, 0, static_cast<size_t>(a.n_tokens * a.hidden * elem),
                                      ctx.stream()));
    }
    return;
  }
  DSV2_CHECK(a.experts != nullptr && a.expert != nullptr && a.weight != nullptr && a.x != nullptr);
  DSV2_CHECK_MSG(a.n_local <= kScanThreads, "RoutedExperts (CUDA): at most 1024 local experts");
  DSV2_CHECK_MSG(a.top_k <= kMaxTopK, "RoutedExperts (CUDA): top_k is at most 64");
  // Slot and row indices are int32 on the device, with headroom for index + blockDim.
  DSV2_CHECK_MSG(a.n_tokens * a.top_k <= (int64_t{1} << 30) && a.hidden <= INT_MAX,
                 "RoutedExperts (CUDA): at most 2^30 slots (n_tokens · top_k)");

  const int64_t width = a.experts[0].gate.rows;
  DSV2_CHECK(width <= INT_MAX);
  for (int64_t e = 0; e < a.n_local; ++e) {
    CheckMatrix(a.experts[e].gate, act, width, a.hidden);
    CheckMatrix(a.experts[e].up, act, width, a.hidden);
    CheckMatrix(a.experts[e].down, act, a.hidden, width);
  }
  const int64_t gate_stride = EvenStride(a, &MlpWeights::gate, elem);
  const int64_t up_stride = EvenStride(a, &MlpWeights::up, elem);
  const int64_t down_stride = EvenStride(a, &MlpWeights::down, elem);
  DispatchAct(act, [&](auto tag) {
    Run<decltype(tag)>(ctx, a, width, gate_stride, up_stride, down_stride);
  });
}

}  // namespace cuda
}  // namespace dsv2
