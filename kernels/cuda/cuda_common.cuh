// Shared by the CUDA twins: launch checks, the activation types and their float conversions.
// Only .cu files include this.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/check.h"
#include "kernels/dtype.h"

namespace dsv2::cuda {

// A CUDA runtime call that must not fail (a failure is a bug or a dead device: abort with the
// call, file and line). Input errors never reach kernels.
#define DSV2_CUDA_CHECK(call)                                                        \
  do {                                                                               \
    const cudaError_t dsv2_err_ = (call);                                            \
    if (dsv2_err_ != cudaSuccess)                                                    \
      ::dsv2::CheckFailed(__FILE__, __LINE__, #call, cudaGetErrorString(dsv2_err_)); \
  } while (0)

// After a launch: configuration errors surface here at once; faults at the next sync.
#define DSV2_CUDA_LAUNCH_CHECK() DSV2_CUDA_CHECK(cudaGetLastError())

// Launches are written DSV2_LAUNCH(grid, block, smem, stream, Kernel<...>)(args...) and dynamic
// shared memory DSV2_DYNAMIC_SHARED(type, name), so that the same source also compiles as C++
// against the CPU emulation of the CUDA thread model (tests/emu/cuda_emu.h defines both there).
#ifndef __CUDA_EMULATION__
#define DSV2_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define DSV2_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(bf16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 FromFloat<bf16>(float v) {
  return __float2bfloat16_rn(v);
}
// Rounds v to what a T can hold (identity for float): the reference's intermediate roundings.
template <typename T>
__device__ __forceinline__ float RoundTo(float v) {
  return ToFloat(FromFloat<T>(v));
}

inline constexpr int kWarp = 32;

// Sum of v over the block; every thread gets the same total. blockDim.x must be a multiple of
// 32 (at most 1024) and the function called once per kernel (smem is not reused). smem: [32].
__device__ __forceinline__ float BlockSum(float v, float* smem) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const int n_warps = static_cast<int>(blockDim.x) / kWarp;
  v = lane < n_warps ? smem[lane] : 0.0f;
  // Every warp reduces the partial sums in the same order: identical totals, no second barrier.
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Calls fn(T{}) with T = float or bf16 for the activation dtype (C++17: a generic lambda
// recovers T as decltype of its argument).
template <typename Fn>
void DispatchAct(DType act, Fn&& fn) {
  if (act == DType::kF32) {
    fn(float{});
  } else {
    DSV2_CHECK_MSG(act == DType::kBF16, "CUDA ops run in float32 or bfloat16");
    fn(bf16{});
  }
}

}  // namespace dsv2::cuda
