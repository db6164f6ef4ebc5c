// CUDA twin of kernels/embedding.h: one thread block per output row, converting table elements
// (F32 or BF16) to the activation dtype; 8 elements per thread access when rows are 16-byte
// aligned on both sides, one otherwise.
#include <climits>
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/embedding.h"

namespace dsv2::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPack = 8;  // elements per vector access

template <typename T>
struct alignas(16) Pack8 {
  T v[kPack];
};

// Row t = blockIdx.x: out[t, :] = act(table[ids[t], :]). table: [rows, dim], rows row_stride
// elements apart; out: [n, dim] dense. vectorized: dim and row_stride are multiples of kPack and
// both base pointers 16-byte aligned (so is every Pack8 then).
template <typename TIn, typename TOut>
__global__ void EmbeddingKernel(const TIn* table, int64_t rows, int64_t row_stride,
                                const int32_t* ids, int dim, TOut* out, bool vectorized) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  // The caller validates ids (the CPU twin aborts on a bad one); never read outside the table.
  if (id < 0 || id >= rows) __trap();
  const TIn* src = table + static_cast<int64_t>(id) * row_stride;  // [dim]
  TOut* dst = out + t * dim;                                       // [dim]
  const int tid = static_cast<int>(threadIdx.x);
  if (vectorized) {
    const Pack8<TIn>* src8 = reinterpret_cast<const Pack8<TIn>*>(src);  // [dim / 8]
    Pack8<TOut>* dst8 = reinterpret_cast<Pack8<TOut>*>(dst);            // [dim / 8]
    for (int k = tid; k < dim / kPack; k += kThreads) {
      const Pack8<TIn> in = src8[k];
      Pack8<TOut> o;
#pragma unroll
      for (int j = 0; j < kPack; ++j) o.v[j] = FromFloat<TOut>(ToFloat(in.v[j]));
      dst8[k] = o;
    }
  } else {
    for (int i = tid; i < dim; i += kThreads) dst[i] = FromFloat<TOut>(ToFloat(src[i]));
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void EmbeddingLookup(CudaContext& ctx, const EmbeddingArgs& a) {
  DSV2_CHECK(a.n >= 0);
  if (a.n == 0) return;
  DSV2_CHECK(a.ids != nullptr && a.out != nullptr && a.table.data != nullptr);
  const WeightView& table = a.table;
  DSV2_CHECK_MSG(table.dtype == DType::kF32 || table.dtype == DType::kBF16,
                 "EmbeddingLookup (CUDA): table dtype must be F32 or BF16");
  DSV2_CHECK(table.cols >= 0 && (table.rows <= 1 || table.row_stride >= table.cols));
  const int64_t dim = table.cols;
  if (dim == 0) return;
  DSV2_CHECK_MSG(a.n <= INT_MAX && dim <= INT_MAX, "EmbeddingLookup: sizes must fit a grid");
  const bool vectorized = dim % kPack == 0 && table.row_stride % kPack == 0 &&
                          Aligned16(table.data) && Aligned16(a.out);
  cudaStream_t stream = ctx.stream();
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using TOut = decltype(tag);
    TOut* out = static_cast<TOut*>(a.out);
    if (table.dtype == DType::kF32) {
      DSV2_LAUNCH(static_cast<unsigned>(a.n), kThreads, 0, stream, EmbeddingKernel<float, TOut>)
      (static_cast<const float*>(table.data), table.rows, table.row_stride, a.ids,
       static_cast<int>(dim), out, vectorized);
    } else {
      DSV2_LAUNCH(static_cast<unsigned>(a.n), kThreads, 0, stream, EmbeddingKernel<bf16, TOut>)
      (static_cast<const bf16*>(table.data), table.rows, table.row_stride, a.ids,
       static_cast<int>(dim), out, vectorized);
    }
    DSV2_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace dsv2::cuda
