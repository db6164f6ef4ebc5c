#include "kernels/cpu_context.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
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
    case CpuIsa::kAvx512Vnni:
      return "avx512vnni";
    case CpuIsa::kAvx512Bf16:
      return "avx512bf16";
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
    case CpuIsa::kAvx512Vnni:
      return CpuSupports(CpuIsa::kAvx512) && __builtin_cpu_supports("avx512vnni");
    case CpuIsa::kAvx512Bf16:
      return CpuSupports(CpuIsa::kAvx512Vnni) && __builtin_cpu_supports("avx512bf16");
  }
  return false;
}

CpuIsa DetectCpuIsa() {
  CpuIsa best = CpuIsa::kScalar;
  for (CpuIsa isa : kAllCpuIsas) {
    if (CpuSupports(isa)) best = isa;
  }
  if (const char* env = std::getenv("DSV2_CPU_ISA")) {
    const std::string want(env);
    bool known = false;
    for (CpuIsa isa : kAllCpuIsas) {
      if (want != CpuIsaName(isa)) continue;
      known = true;
      best = std::min(best, isa);  // lowers only: a level the CPU lacks is not granted
    }
    static const bool warned = [&] {
      if (!known) {
        std::fprintf(stderr,
                     "dsv2: DSV2_CPU_ISA='%s' is not one of scalar, avx2, avx512, avx512vnni, "
                     "avx512bf16; "
                     "using %s\n",
                     env, CpuIsaName(best));
      }
      return true;
    }();
    (void)warned;
  }
  return best;
}

namespace {

// How long an idle thread spins before it sleeps: long enough to cover the small ops a decode
// step runs on the calling thread between two matmuls.
constexpr auto kSpinTime = std::chrono::microseconds(100);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() holds or kSpinTime has passed; returns done().
template <typename Pred>
bool SpinUntil(Pred done) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
    CpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > kSpinTime) return done();
  }
}

}  // namespace

CpuContext::CpuContext(int num_threads, CpuIsa isa, DType act) : isa_(isa), act_dtype_(act) {
  DSV2_CHECK_MSG(CpuSupports(isa), "CpuContext: this processor cannot run the requested ISA");
  DSV2_CHECK_MSG(act == DType::kF32 || act == DType::kBF16,
                 "CpuContext: activations are float32 or bfloat16");
  if (num_threads <= 0) {
    if (const char* env = std::getenv("DSV2_NUM_THREADS")) num_threads = std::atoi(env);
  }
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads = std::max(1, num_threads);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

CpuContext::~CpuContext() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void CpuContext::RunChunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n,
                           int64_t chunk) const {
  while (true) {
    const int64_t begin = next_chunk_.fetch_add(chunk, std::memory_order_relaxed);
    if (begin >= n) return;
    fn(begin, std::min(n, begin + chunk));
  }
}

void CpuContext::WorkerLoop() {
  uint64_t seen = 0;
  while (true) {
    SpinUntil([&] {
      return published_.load(std::memory_order_acquire) != seen ||
             stop_.load(std::memory_order_relaxed);
    });
    const std::function<void(int64_t, int64_t)>* job;
    int64_t n, chunk;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (generation_ == seen && !stop_) {
        ++sleepers_;
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        --sleepers_;
      }
      if (stop_) return;
      seen = generation_;
      if (job_ == nullptr) continue;  // that job was finished before this worker arrived
      job = job_;
      n = job_n_;
      chunk = job_chunk_;
      // Under mu_: once the caller has cleared job_, the set of joined workers is final.
      active_.fetch_add(1, std::memory_order_relaxed);
    }
    RunChunks(*job, n, chunk);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_all();
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
  // A few chunks per thread balance uneven work; claiming one is a single atomic add.
  ParallelForChunks(n, std::max(grain, (n + threads * 4 - 1) / (threads * 4)), fn);
}

void CpuContext::ParallelForChunks(int64_t n, int64_t chunk,
                                   const std::function<void(int64_t, int64_t)>& fn) const {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  if (num_threads() == 1 || n <= chunk) {
    fn(0, n);
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_chunk_ = chunk;
    next_chunk_.store(0, std::memory_order_relaxed);
    ++generation_;
    published_.store(generation_, std::memory_order_release);
    wake = sleepers_ > 0;
  }
  if (wake) work_cv_.notify_all();
  RunChunks(fn, n, chunk);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = nullptr;  // workers arriving from now on skip this job
  }
  // Every chunk is claimed; wait for the workers still running theirs.
  auto done = [&] { return active_.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(done)) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, done);
  }
}

}  // namespace dsv2
