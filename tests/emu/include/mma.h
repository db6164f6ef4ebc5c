// Stand-in for <mma.h> under the CPU emulation: nvcuda::wmma fragments of any M × N × K.
// A fragment of R × C elements holds R·C / 32 of them per lane, in an order scrambled on
// purpose (element e of lane l is tile element (37 · (l · n + e)) mod R·C), so a kernel that
// assumed a layout would fail here as it would on some device. load/store are warp collectives
// (every lane must arrive) after which each lane moves its own elements; mma_sync gathers the
// warp's pieces, computes D = A·B + C in float32 (ascending k), and scatters D back.
#pragma once

#include <cstdint>

#include "cuda_bf16.h"
#include "tests/emu/cuda_emu.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <typename Use, int M, int N, int K>
struct Shape;
template <int M, int N, int K>
struct Shape<matrix_a, M, N, K> {
  static constexpr int kRows = M, kCols = K;
};
template <int M, int N, int K>
struct Shape<matrix_b, M, N, K> {
  static constexpr int kRows = K, kCols = N;
};
template <int M, int N, int K>
struct Shape<accumulator, M, N, K> {
  static constexpr int kRows = M, kCols = N;
};
inline float AsFloat(float v) { return v; }
inline float AsFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
T FromFloat(float v);
template <>
inline float FromFloat<float>(float v) {
  return v;
}
template <>
inline __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int kRows = detail::Shape<Use, M, N, K>::kRows;
  static constexpr int kCols = detail::Shape<Use, M, N, K>::kCols;
  static constexpr int kTile = kRows * kCols;
  static_assert(kTile % 32 == 0, "a fragment spreads over the 32 lanes");
  static constexpr int num_elements = kTile / 32;
  T x[num_elements];
  // The tile element (row-major index) that element e of `lane` holds.
  static int TileIndex(int lane, int e) { return (37 * (lane * num_elements + e)) % kTile; }
};

namespace detail {
inline int Lane() { return static_cast<int>(threadIdx.x % 32); }
// Element (r, c) of a matrix at p with leading dimension ld in the given order.
template <typename T>
T& At(T* p, int r, int c, unsigned ld, bool row_major_order) {
  return row_major_order ? p[r * static_cast<int64_t>(ld) + c]
                         : p[c * static_cast<int64_t>(ld) + r];
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T v) {
  for (int e = 0; e < f.num_elements; ++e) f.x[e] = v;
}

// matrix_a / matrix_b with a layout in the type.
template <typename Use, int M, int N, int K, typename T, typename Layout, typename TMem>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const TMem* p, unsigned ld) {
  static_assert(std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>,
                "matrix_a/matrix_b fragments name their layout");
  ::dsv2::emu::WarpGather("wmma::load_matrix_sync", &f, {});
  using F = fragment<Use, M, N, K, T, Layout>;
  const int lane = detail::Lane();
  for (int e = 0; e < F::num_elements; ++e) {
    const int idx = F::TileIndex(lane, e);
    f.x[e] = detail::At(p, idx / F::kCols, idx % F::kCols, ld, std::is_same_v<Layout, row_major>);
  }
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ld,
                      layout_t layout) {
  ::dsv2::emu::WarpGather("wmma::load_matrix_sync", &f, {});
  using F = fragment<accumulator, M, N, K, T>;
  const int lane = detail::Lane();
  for (int e = 0; e < F::num_elements; ++e) {
    const int idx = F::TileIndex(lane, e);
    f.x[e] = detail::At(p, idx / F::kCols, idx % F::kCols, ld, layout == mem_row_major);
  }
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ld,
                       layout_t layout) {
  ::dsv2::emu::WarpGather("wmma::store_matrix_sync",
                          const_cast<void*>(static_cast<const void*>(&f)), {});
  using F = fragment<accumulator, M, N, K, T>;
  const int lane = detail::Lane();
  for (int e = 0; e < F::num_elements; ++e) {
    const int idx = F::TileIndex(lane, e);
    detail::At(p, idx / F::kCols, idx % F::kCols, ld, layout == mem_row_major) = f.x[e];
  }
}

template <int M, int N, int K, typename TAB, typename LA, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TAB, LA>& a,
              const fragment<matrix_b, M, N, K, TAB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  using FA = fragment<matrix_a, M, N, K, TAB, LA>;
  using FB = fragment<matrix_b, M, N, K, TAB, LB>;
  using FC = fragment<accumulator, M, N, K, TC>;
  struct Piece {
    FC* d;
    const FA* a;
    const FB* b;
    const FC* c;
  } mine{&d, &a, &b, &c};
  ::dsv2::emu::WarpGather("wmma::mma_sync", &mine, [](void* const* pieces) {
    float ta[M * K], tb[K * N], tc[M * N];
    for (int lane = 0; lane < 32; ++lane) {
      const Piece& p = *static_cast<const Piece*>(pieces[lane]);
      for (int e = 0; e < FA::num_elements; ++e)
        ta[FA::TileIndex(lane, e)] = detail::AsFloat(p.a->x[e]);
      for (int e = 0; e < FB::num_elements; ++e)
        tb[FB::TileIndex(lane, e)] = detail::AsFloat(p.b->x[e]);
      for (int e = 0; e < FC::num_elements; ++e)
        tc[FC::TileIndex(lane, e)] = detail::AsFloat(p.c->x[e]);
    }
    float td[M * N];
    for (int i = 0; i < M; ++i) {
      for (int j = 0; j < N; ++j) {
        float acc = tc[i * N + j];
        for (int k = 0; k < K; ++k) acc = std::fma(ta[i * K + k], tb[k * N + j], acc);
        td[i * N + j] = acc;
      }
    }
    for (int lane = 0; lane < 32; ++lane) {
      const Piece& p = *static_cast<const Piece*>(pieces[lane]);
      for (int e = 0; e < FC::num_elements; ++e)
        p.d->x[e] = detail::FromFloat<TC>(td[FC::TileIndex(lane, e)]);
    }
  });
}

}  // namespace nvcuda::wmma
