// MatMul: y[b][n, rows] (+)= x[b][n, cols] · W[b]ᵀ for b < batch, with W[b] a checkpoint weight
// [rows, cols] (row-major, PyTorch's [out, in]). batch > 1 is the per-head product of the
// absorbed attention (W_UK, W_UV): operand b starts `*_batch_stride` elements after operand 0.
//
// x is in the context's activation dtype; y too unless y_float32 (router logits, lm_head).
// CPU, float32 activations: W is F32, F16 or BF16 and widened to float32 as it is used — in
// registers for small n, or one 32-row × 1024-column panel at a time for large n — never a
// full-size float32 copy. Accumulation is float32 (fp32 FMA). n == 1 is the decode matvec,
// split across threads by rows of W; for larger n a panel of W is reused across all tokens.
// CPU, bfloat16 activations: y = act(x·Wᵀ) (or act(y + x·Wᵀ)) from a float32 sum, as cuBLAS
// rounds. With AVX512_BF16 and BF16 weights, vdpbf16ps runs on x and W as they are (bf16
// products are exact in float32): a dot kernel for small n, for larger n a GEMM over slabs of W
// repacked as bf16 pairs; otherwise x is widened to float32 and the float32 kernels run.
// CUDA: cuBLAS with W in the activation dtype (uploaded so), fp32 accumulation, and in float32
// runs true fp32 (no TF32).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/exec_context.h"
#include "kernels/weight_view.h"

namespace dsv2 {

struct MatMulArgs {
  const void* x = nullptr;  // [n, w.cols], rows x_stride apart
  int64_t x_stride = 0;
  int64_t n = 0;
  WeightView w;       // [rows, cols]
  void* y = nullptr;  // [n, w.rows], rows y_stride apart
  int64_t y_stride = 0;
  bool accumulate = false;  // y += x·Wᵀ instead of y = x·Wᵀ
  bool y_float32 = false;   // y is float32 whatever the activation dtype
  int64_t batch = 1;
  int64_t x_batch_stride = 0;  // elements
  int64_t w_batch_stride = 0;  // elements of W's dtype
  int64_t y_batch_stride = 0;  // elements
};

namespace cpu {
void MatMul(const CpuContext& ctx, const MatMulArgs& args);
// Several independent products (none reads another's output) in one parallel region: their
// tiles are shared by the threads, so small products (an MoE layer's experts) need not each
// pay a fork and join. Results are those of MatMul on each.
void MatMulGroup(const CpuContext& ctx, const std::vector<MatMulArgs>& products);
}  // namespace cpu
namespace cuda {
void MatMul(CudaContext& ctx, const MatMulArgs& args);
}

inline void MatMul(const ExecContext& ctx, const MatMulArgs& args) {
  if (ctx.on_cuda()) return cuda::MatMul(ctx.cuda(), args);
  cpu::MatMul(ctx.cpu(), args);
}

// Same contract (float32 activations, host memory) computed with plain scalar loops in double
// precision: the test oracle.
void MatMulReference(const MatMulArgs& args);

}  // namespace dsv2
