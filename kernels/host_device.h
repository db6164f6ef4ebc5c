// DSV2_HD marks math shared by a CPU op and its CUDA twin: plain inline functions on the host,
// __host__ __device__ under nvcc. Such a function is compiled (and tested) on both sides.
#pragma once

#if defined(__CUDACC__)
#define DSV2_HD __host__ __device__ __forceinline__
#else
#define DSV2_HD inline
#endif
