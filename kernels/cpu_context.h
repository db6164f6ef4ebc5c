// The CPU "stream": which instruction set the ops use and the worker threads they split work
// over. Ops never create threads themselves; they call ParallelFor on the context they are given.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/dtype.h"

namespace dsv2 {

// Each level includes the ones before it. kAvx512Vnni: AVX-512 with the int8 dot product
// (vpdpbusd), used by the block-quantized weights. kAvx512Bf16: AVX-512 with the bf16 dot
// product (vdpbf16ps), used when activations are bfloat16 (every CPU that has it has VNNI).
enum class CpuIsa : uint8_t { kScalar, kAvx2, kAvx512, kAvx512Vnni, kAvx512Bf16 };
inline constexpr CpuIsa kAllCpuIsas[] = {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512,
                                         CpuIsa::kAvx512Vnni, CpuIsa::kAvx512Bf16};

const char* CpuIsaName(CpuIsa isa);

// The best ISA this processor and OS support; DSV2_CPU_ISA=scalar|avx2|avx512|avx512vnni|avx512bf16
// lowers it (never raises it: a level the CPU lacks is not used); another value is named in one
// line on stderr and ignored.
CpuIsa DetectCpuIsa();
// True when the processor can run `isa` (so tests can exercise every available variant).
bool CpuSupports(CpuIsa isa);

class CpuContext {
 public:
  // num_threads <= 0: one per available core (DSV2_NUM_THREADS overrides). act: the activation
  // dtype of the ops run on it, float32 or bfloat16 (as a CudaContext's).
  explicit CpuContext(int num_threads = 0, CpuIsa isa = DetectCpuIsa(), DType act = DType::kF32);
  ~CpuContext();
  CpuContext(const CpuContext&) = delete;
  CpuContext& operator=(const CpuContext&) = delete;

  CpuIsa isa() const { return isa_; }
  DType act_dtype() const { return act_dtype_; }
  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into contiguous chunks of at least `grain` items and runs fn(begin, end) on
  // the calling thread and the workers; returns when all chunks are done. Not re-entrant.
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn) const;
  // The same with chunks of exactly `chunk` items, claimed one at a time: for items of uneven
  // cost (the tiles of several products in one region), where ParallelFor's few large chunks
  // per thread would leave one thread finishing alone.
  void ParallelForChunks(int64_t n, int64_t chunk,
                         const std::function<void(int64_t begin, int64_t end)>& fn) const;

 private:
  void WorkerLoop();
  void RunChunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n, int64_t chunk) const;

  CpuIsa isa_;
  DType act_dtype_;
  std::vector<std::thread> workers_;
  // A job is published by bumping generation_ under mu_. Idle workers spin on published_ for a
  // short while before sleeping on work_cv_, and the caller spins on active_ before sleeping on
  // done_cv_: waking a sleeping thread costs tens of microseconds, as much as a small matvec.
  mutable std::mutex mu_;
  mutable std::condition_variable work_cv_;
  mutable std::condition_variable done_cv_;
  mutable const std::function<void(int64_t, int64_t)>* job_ = nullptr;  // guarded by mu_
  mutable int64_t job_n_ = 0;                                           // guarded by mu_
  mutable int64_t job_chunk_ = 0;                                       // guarded by mu_
  mutable uint64_t generation_ = 0;                                     // guarded by mu_
  mutable int sleepers_ = 0;                                            // guarded by mu_
  mutable std::atomic<uint64_t> published_{0};  // == generation_, readable without mu_
  mutable std::atomic<int64_t> next_chunk_{0};  // first item of the next unclaimed chunk
  mutable std::atomic<int> active_{0};          // workers that joined the current job
  std::atomic<bool> stop_{false};               // set under mu_
};

}  // namespace dsv2
