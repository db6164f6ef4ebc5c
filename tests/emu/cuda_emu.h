// A CPU emulation of the CUDA thread model, so that the bodies of our kernels run in CI
// (DESIGN.md, "Verifying GPU code on machines without a GPU"; ctest label `emu`).
//
// Each kernels/cuda/*.cu is compiled as C++ against this header (through the stand-ins for
// <cuda_runtime.h>, <cuda_bf16.h>, <cuda_pipeline.h> and <mma.h> in tests/emu/include/) and its
// host wrapper runs unchanged: a launch runs the grid's blocks one after another, and each CUDA
// thread of a block is a fiber with its own stack. Threads run one at a time, each until it
// reaches a point where it must wait for others, in thread order in even blocks and in reverse
// order in odd ones, so a thread that reads what another has not yet written (a missing
// barrier) reads stale or poisoned data in one of the two:
//   - __syncthreads: waits for every thread of the block that has not exited;
//   - warp collectives (__shfl_*_sync, __ballot_sync, __any/__all_sync, __syncwarp, the WMMA
//     *_sync calls): wait for every lane named in the mask; a lane that has exited or waits at a
//     different collective is reported, as is a block that can make no progress (a deadlock);
//   - shared memory: `__shared__` arrays are function statics (one block runs at a time), so
//     they start with what the previous block of any launch left there; dynamic shared memory is a
//     fresh heap allocation of exactly the launch's size, filled with 0xff (NaN) bytes, so ASan
//     sees an access past it;
//   - cp.async (__pipeline_memcpy_async): the copy lands at __pipeline_wait_prior, not before
//     (a read before the wait sees the old contents);
//   - WMMA fragments hold 1/32 of the tile per lane in a scrambled order (the layout is opaque,
//     as on the device); mma_sync gathers the warp's pieces, multiplies in float32, and scatters;
//   - atomics are plain read-modify-writes (one fiber runs at a time); __trap aborts with the
//     kernel, block and thread.
// It stops where a kernel's body stops: cuBLAS, streams (a launch runs to completion at once),
// events, graphs, occupancy, timing and the memory model of concurrently running warps are not
// emulated. Device memory is host memory (cudaMalloc is malloc), so ASan checks every global
// access a kernel makes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>

// ---- Keywords and qualifiers --------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __constant__ static
#define __CUDA_EMULATION__ 1

// ---- Vector and index types ---------------------------------------------------------------

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

namespace dsv2::emu {

// ---- The running thread -------------------------------------------------------------------

struct ThreadState;  // one CUDA thread (a fiber); defined in emu_runtime.cc

// What a kernel body sees of the thread it runs as.
struct ThreadView {
  uint3 thread_idx;
  uint3 block_idx;
  uint3 block_dim;
  uint3 grid_dim;
  ThreadState* state;
};
// The CUDA thread the calling code runs as; aborts outside a kernel.
const ThreadView& Here();

// ---- Synchronisation (each blocks the calling fiber until its partners arrive) --------------

void SyncThreads();

// Warp collectives: every lane in `mask` must arrive at the same kind of collective. `in` is
// the lane's value (up to 8 bytes), the result comes back in `out`.
enum class Collective {
  kSyncWarp,
  kShflXor,
  kShflUp,
  kShflDown,
  kShflIdx,
  kBallot,
  kAny,
  kAll,
  kWmma
};
uint64_t WarpCollective(Collective kind, unsigned mask, uint64_t in, int arg, int width);

// WMMA: each lane registers `piece` (its fragment storage); once every lane of the warp has
// arrived, `all` runs once with the 32 lanes' pieces (lane order). `all` may be empty (a
// convergence point only).
void WarpGather(const char* what, void* piece, const std::function<void(void* const*)>& all);

// cp.async: the copy is queued and lands at __pipeline_wait_prior.
void PipelineCopy(void* dst, const void* src, size_t bytes);
void PipelineCommit();
void PipelineWaitPrior(size_t pending);

[[noreturn]] void Trap();
// The current launch's dynamic shared memory (extern __shared__).
unsigned char* DynamicShared();

template <typename T>
uint64_t Bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of <= 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T FromBits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// ---- Launches -----------------------------------------------------------------------------

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t dynamic_smem = 0;
  const void* kernel = nullptr;  // for cudaFuncSetAttribute's limit
  const char* name = "";
};
// Runs `body` as every thread of every block of the grid, one block at a time. A bad
// configuration is recorded for cudaGetLastError and nothing runs.
void RunGrid(const LaunchConfig& config, const std::function<void()>& body);

template <typename Kernel>
class Launcher {
 public:
  Launcher(dim3 grid, dim3 block, size_t smem, const char* name, Kernel* kernel) : kernel_(kernel) {
    config_.grid = grid;
    config_.block = block;
    config_.dynamic_smem = smem;
    config_.kernel = reinterpret_cast<const void*>(kernel);
    config_.name = name;
  }
  // Every thread gets its own copy of the arguments, as kernel parameters are.
  template <typename... Args>
  void operator()(Args&&... args) const {
    Kernel* kernel = kernel_;
    RunGrid(config_, [=]() { kernel(args...); });
  }

 private:
  LaunchConfig config_;
  Kernel* kernel_;
};
template <typename Kernel>
Launcher<Kernel> MakeLauncher(dim3 grid, dim3 block, size_t smem, const char* name,
                              Kernel* kernel) {
  return Launcher<Kernel>(grid, block, smem, name, kernel);
}

}  // namespace dsv2::emu

// DSV2_LAUNCH(grid, block, smem, stream, Kernel<...>)(args...): `Kernel<<<...>>>(args...)`
// under nvcc (kernels/cuda/cuda_common.cuh); here a synchronous emulated launch.
#define DSV2_LAUNCH(grid, block, smem, stream, ...) \
  (void)(stream), ::dsv2::emu::MakeLauncher(grid, block, smem, #__VA_ARGS__, &__VA_ARGS__)
// extern __shared__: the launch's dynamic shared memory.
#define DSV2_DYNAMIC_SHARED(type, name) \
  type* const name = reinterpret_cast<type*>(::dsv2::emu::DynamicShared())

#define threadIdx (::dsv2::emu::Here().thread_idx)
#define blockIdx (::dsv2::emu::Here().block_idx)
#define blockDim (::dsv2::emu::Here().block_dim)
#define gridDim (::dsv2::emu::Here().grid_dim)
inline constexpr int warpSize = 32;

// ---- Intrinsics ---------------------------------------------------------------------------

inline void __syncthreads() { ::dsv2::emu::SyncThreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::dsv2::emu::WarpCollective(::dsv2::emu::Collective::kSyncWarp, mask, 0, 0, 32);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::dsv2::emu::FromBits<T>(::dsv2::emu::WarpCollective(
      ::dsv2::emu::Collective::kShflXor, mask, ::dsv2::emu::Bits(v), lane_mask, width));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::dsv2::emu::FromBits<T>(::dsv2::emu::WarpCollective(::dsv2::emu::Collective::kShflUp,
                                                              mask, ::dsv2::emu::Bits(v),
                                                              static_cast<int>(delta), width));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::dsv2::emu::FromBits<T>(::dsv2::emu::WarpCollective(::dsv2::emu::Collective::kShflDown,
                                                              mask, ::dsv2::emu::Bits(v),
                                                              static_cast<int>(delta), width));
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::dsv2::emu::FromBits<T>(::dsv2::emu::WarpCollective(
      ::dsv2::emu::Collective::kShflIdx, mask, ::dsv2::emu::Bits(v), src_lane, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(
      ::dsv2::emu::WarpCollective(::dsv2::emu::Collective::kBallot, mask, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred) {
  return static_cast<int>(
      ::dsv2::emu::WarpCollective(::dsv2::emu::Collective::kAny, mask, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred) {
  return static_cast<int>(
      ::dsv2::emu::WarpCollective(::dsv2::emu::Collective::kAll, mask, pred != 0, 0, 32));
}

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline float __uint_as_float(unsigned v) { return ::dsv2::emu::FromBits<float>(v); }
inline unsigned __float_as_uint(float v) { return static_cast<unsigned>(::dsv2::emu::Bits(v)); }
inline float __int_as_float(int v) {
  return ::dsv2::emu::FromBits<float>(static_cast<unsigned>(v));
}
inline int __float_as_int(float v) { return static_cast<int>(::dsv2::emu::Bits(v)); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
[[noreturn]] inline void __trap() { ::dsv2::emu::Trap(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
// Device-side min/max on integers and floats (CUDA declares these at global scope).
#define DSV2_EMU_MINMAX(T)                         \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
DSV2_EMU_MINMAX(int)
DSV2_EMU_MINMAX(unsigned)
DSV2_EMU_MINMAX(long)
DSV2_EMU_MINMAX(unsigned long)
DSV2_EMU_MINMAX(long long)
DSV2_EMU_MINMAX(unsigned long long)
DSV2_EMU_MINMAX(float)
DSV2_EMU_MINMAX(double)
#undef DSV2_EMU_MINMAX
using std::isfinite;
using std::isinf;
using std::isnan;
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline float __fdividef(float a, float b) { return a / b; }
