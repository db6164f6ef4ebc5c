// MatMul on CUDA: one cuBLAS GEMM (strided-batched when batch > 1). Row-major
// y[n, rows] = x[n, cols] · Wᵀ is, read column-major, yᵀ[rows, n] = W[rows, cols] · xᵀ[cols, n]:
// op(A) = Wᵀ of the column-major [cols, rows] matrix W (lda = row_stride), B = x column-major
// [cols, n] (ldb = x_stride), C = y column-major [rows, n] (ldc = y_stride). Accumulation is fp32
// (CUBLAS_COMPUTE_32F); the context puts the handle in pedantic math for float32 runs (no TF32).
#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/check.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/matmul.h"

// A cuBLAS call that must not fail: abort naming the call and the status.
#define DSV2_CUBLAS_CHECK(call)                                                        \
  do {                                                                                 \
    const cublasStatus_t dsv2_st_ = (call);                                            \
    if (dsv2_st_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::dsv2::CheckFailed(__FILE__, __LINE__, #call, cublasGetStatusString(dsv2_st_)); \
  } while (0)

namespace dsv2 {
namespace cuda {
namespace {

cudaDataType_t CudaType(DType t) { return t == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

int AsInt(int64_t v) {
  DSV2_CHECK_MSG(v >= 0 && v <= INT_MAX, "MatMul (CUDA): a size or stride exceeds int32");
  return static_cast<int>(v);
}

}  // namespace

void MatMul(CudaContext& ctx, const MatMulArgs& a) {
  const int64_t n = a.n, rows = a.w.rows, cols = a.w.cols;
  const DType act = ctx.act_dtype();
  DSV2_CHECK(a.batch >= 1);
  DSV2_CHECK(n >= 0 && rows >= 0 && cols >= 0);
  DSV2_CHECK_MSG(act == DType::kF32 || act == DType::kBF16,
                 "MatMul (CUDA): activations are float32 or bfloat16");
  DSV2_CHECK_MSG(a.w.dtype == act,
                 "MatMul (CUDA): W's dtype differs from the activation dtype (weights are "
                 "uploaded in the activation dtype)");
  if (n == 0 || rows == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr);
  DSV2_CHECK(a.w.data != nullptr || cols == 0);
  DSV2_CHECK(a.w.row_stride >= cols || rows == 1);
  DSV2_CHECK(n == 1 || (a.x_stride >= cols && a.y_stride >= rows));

  const DType y_dtype = a.y_float32 ? DType::kF32 : act;
  const int64_t y_size = DTypeSize(y_dtype);
  cudaStream_t stream = ctx.stream();

  if (cols == 0) {  // an empty sum: y = 0, or y unchanged when accumulating
    if (a.accumulate) return;
    const int64_t pitch = (n == 1 ? rows : a.y_stride) * y_size;  // bytes between rows of y
    for (int64_t b = 0; b < a.batch; ++b) {
      char* y = static_cast<char*>(a.y) + b * a.y_batch_stride * y_size;
      DSV2_CUDA_CHECK(cudaMemset2DAsync(y, static_cast<size_t>(pitch), 0,
                                        static_cast<size_t>(rows * y_size), static_cast<size_t>(n),
                                        stream));
    }
    return;
  }

  // For n == 1 (and rows == 1) the CPU twin ignores the strides; cuBLAS still wants them valid.
  const int mi = AsInt(rows), ni = AsInt(n), ki = AsInt(cols);
  const int lda = AsInt(rows == 1 ? std::max(a.w.row_stride, cols) : a.w.row_stride);
  const int ldb = AsInt(n == 1 ? std::max(a.x_stride, cols) : a.x_stride);
  const int ldc = AsInt(n == 1 ? std::max(a.y_stride, rows) : a.y_stride);
  const cudaDataType_t ab_type = CudaType(act);
  const cudaDataType_t c_type = CudaType(y_dtype);
  const float alpha = 1.0f;
  const float beta = a.accumulate ? 1.0f : 0.0f;
  cublasHandle_t handle = ctx.cublas();

  if (a.batch == 1) {
    DSV2_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, mi, ni, ki, &alpha, a.w.data,
                                   ab_type, lda, a.x, ab_type, ldb, &beta, a.y, c_type, ldc,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  DSV2_CUBLAS_CHECK(
      cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, mi, ni, ki, &alpha, a.w.data,
                                 ab_type, lda, static_cast<long long>(a.w_batch_stride), a.x,
                                 ab_type, ldb, static_cast<long long>(a.x_batch_stride), &beta, a.y,
                                 c_type, ldc, static_cast<long long>(a.y_batch_stride),
                                 AsInt(a.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace cuda
}  // namespace dsv2
