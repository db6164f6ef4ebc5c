#include "kernels/cpu_context.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/check.h"

namespace dsv2 {

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

bool CpuSupports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case CpuIsa::kAvx512:
      // The AVX-512 kernels are compiled with fma and f16c too.
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }
  return false;
}

CpuIsa DetectCpuIsa() {
  CpuIsa best = CpuIsa::kScalar;
  if (CpuSupports(CpuIsa::kAvx2)) best = CpuIsa::kAvx2;
  if (CpuSupports(CpuIsa::kAvx512)) best = CpuIsa::kAvx512;
  if (const char* env = std::getenv("DSV2_CPU_ISA")) {
    const std::string want(env);
    if (want == "scalar") best = CpuIsa::kScalar;
    if (want == "avx2" && best == CpuIsa::kAvx512) best = CpuIsa::kAvx2;
  }
  return best;
}

CpuContext::CpuContext(int num_threads, CpuIsa isa) : isa_(isa) {
  DSV2_CHECK_MSG(CpuSupports(isa), "CpuContext: this processor cannot run the requested ISA");
  if (num_threads <= 0) {
    if (const char* env = std::getenv("DSV2_NUM_THREADS")) num_threads = std::atoi(env);
  }
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads = std::max(1, num_threads);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

CpuContext::~CpuContext() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void CpuContext::RunChunks(int64_t n, int64_t chunk,
                           const std::function<void(int64_t, int64_t)>& fn) const {
  while (true) {
    int64_t begin;
    {
      std::lock_guard<std::mutex> lock(mu_);
      begin = next_chunk_;
      next_chunk_ += chunk;
    }
    if (begin >= n) return;
    fn(begin, std::min(n, begin + chunk));
  }
}

void CpuContext::WorkerLoop(int /*index*/) {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int64_t, int64_t)>* job;
    int64_t n, chunk;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (job_ == nullptr) continue;  // woke after that job was already finished
      job = job_;
      n = job_n_;
      chunk = job_chunk_;
      ++active_;
    }
    RunChunks(n, chunk, *job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) done_cv_.notify_all();
    }
  }
}

void CpuContext::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) const {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t threads = num_threads();
  if (threads == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // A few chunks per thread balance uneven work without much locking.
  int64_t chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_chunk_ = chunk;
    next_chunk_ = 0;
    ++generation_;
  }
  work_cv_.notify_all();
  RunChunks(n, chunk, fn);
  std::unique_lock<std::mutex> lock(mu_);
  // Workers that woke for this generation finish their chunks; late ones find nothing left.
  done_cv_.wait(lock, [&] { return active_ == 0; });
  job_ = nullptr;
}

}  // namespace dsv2
