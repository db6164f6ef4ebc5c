// The CUDA emulation's scheduler (tests/emu/cuda_emu.h): a launch runs its blocks one at a
// time; a block's threads are fibers, run in thread order, each until it waits for others.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tests/emu/fiber.h"
#include "tests/emu/include/cuda_runtime.h"

namespace dsv2::emu {

enum class Wait { kNone, kBarrier, kWarp, kDone };

struct PendingCopy {
  void* dst;
  const void* src;
  size_t bytes;
};

struct ThreadState {
  ThreadView view;
  Fiber fiber;
  Wait wait = Wait::kNone;
  int index = 0;  // linear thread index in the block
  // The warp collective this lane waits at.
  Collective kind = Collective::kSyncWarp;
  unsigned mask = 0;
  uint64_t in = 0;
  uint64_t out = 0;
  int arg = 0;
  int width = 32;
  const char* what = "";
  void* piece = nullptr;
  // cp.async: copies not yet committed, and committed groups oldest first.
  std::vector<PendingCopy> open_group;
  std::deque<std::vector<PendingCopy>> committed;
};

namespace {

constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultSmemLimit = 48 << 10;
constexpr size_t kOptinSmemLimit = 227 << 10;  // Hopper's opt-in maximum per block

struct Emulation {
  std::vector<std::unique_ptr<ThreadState>> threads;  // kMaxThreads, reused by every block
  ThreadState* current = nullptr;
  int n_threads = 0;
  int live = 0;
  int at_barrier = 0;
  const LaunchConfig* config = nullptr;
  const std::function<void()>* body = nullptr;
  unsigned char* dynamic_smem = nullptr;
  cudaError_t last_error = cudaSuccess;
  std::unordered_map<const void*, size_t> smem_limits;  // kernel → max dynamic shared bytes
  std::mutex one_launch_at_a_time;
};

Emulation& Emu() {
  static Emulation* emu = new Emulation;  // never destroyed: fibers may outlive static dtors
  return *emu;
}

size_t StackBytes() {
  const char* kb = std::getenv("DSV2_EMU_STACK_KB");
#if defined(__SANITIZE_ADDRESS__)
  const size_t fallback = 512;
#else
  const size_t fallback = 128;
#endif
  return (kb != nullptr ? std::strtoul(kb, nullptr, 10) : fallback) << 10;
}

std::string Where(const ThreadState& t) {
  const ThreadView& v = t.view;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%s block (%u,%u,%u) thread (%u,%u,%u)", Emu().config->name,
                v.block_idx.x, v.block_idx.y, v.block_idx.z, v.thread_idx.x, v.thread_idx.y,
                v.thread_idx.z);
  return buf;
}

[[noreturn]] void Fail(const ThreadState* t, const std::string& what) {
  std::fprintf(stderr, "cuda emulation: %s%s%s\n", t != nullptr ? Where(*t).c_str() : "",
               t != nullptr ? ": " : "", what.c_str());
  std::fflush(stderr);
  std::abort();
}

const char* CollectiveName(Collective k) {
  switch (k) {
    case Collective::kSyncWarp:
      return "__syncwarp";
    case Collective::kShflXor:
      return "__shfl_xor_sync";
    case Collective::kShflUp:
      return "__shfl_up_sync";
    case Collective::kShflDown:
      return "__shfl_down_sync";
    case Collective::kShflIdx:
      return "__shfl_sync";
    case Collective::kBallot:
      return "__ballot_sync";
    case Collective::kAny:
      return "__any_sync";
    case Collective::kAll:
      return "__all_sync";
    case Collective::kWmma:
      return "a wmma collective";
  }
  return "?";
}

void CompleteCopies(std::vector<PendingCopy>& group) {
  for (const PendingCopy& c : group) std::memcpy(c.dst, c.src, c.bytes);
  group.clear();
}

void ThreadMain(void* arg) {
  auto* t = static_cast<ThreadState*>(arg);
  (*Emu().body)();
  // Copies still in flight land before the thread is gone.
  while (!t->committed.empty()) {
    CompleteCopies(t->committed.front());
    t->committed.pop_front();
  }
  CompleteCopies(t->open_group);
  Emulation& e = Emu();
  t->wait = Wait::kDone;
  --e.live;
  // Exited threads no longer count at __syncthreads.
  if (e.at_barrier > 0 && e.at_barrier == e.live) {
    for (int i = 0; i < e.n_threads; ++i) {
      if (e.threads[i]->wait == Wait::kBarrier) e.threads[i]->wait = Wait::kNone;
    }
    e.at_barrier = 0;
  }
  t->fiber.Exit();
}

// Nothing can run: say who waits for what, then abort.
[[noreturn]] void Deadlock() {
  Emulation& e = Emu();
  std::string msg = "deadlock: no thread of the block can make progress";
  int shown = 0;
  for (int i = 0; i < e.n_threads && shown < 8; ++i) {
    const ThreadState& t = *e.threads[i];
    if (t.wait == Wait::kDone) continue;
    ++shown;
    msg += "\n  " + Where(t) + " waits at ";
    if (t.wait == Wait::kBarrier) {
      msg += "__syncthreads";
    } else {
      char mask[16];
      std::snprintf(mask, sizeof(mask), "%08x", t.mask);
      msg += std::string(t.kind == Collective::kWmma ? t.what : CollectiveName(t.kind)) +
             " (mask " + mask + ")";
    }
  }
  Fail(nullptr, msg);
}

// Threads run in thread order in even blocks and in reverse order in odd ones: a thread that
// reads what a lower thread writes without a barrier between is caught in the odd blocks, one
// that reads a higher thread's in the even ones.
void RunBlock(Emulation& e, uint3 block_idx, bool reverse) {
  const dim3& bd = e.config->block;
  for (int i = 0; i < e.n_threads; ++i) {
    ThreadState& t = *e.threads[i];
    t.index = i;
    t.wait = Wait::kNone;
    t.view.block_idx = block_idx;
    t.view.block_dim = {bd.x, bd.y, bd.z};
    t.view.grid_dim = {e.config->grid.x, e.config->grid.y, e.config->grid.z};
    t.view.thread_idx = {static_cast<unsigned>(i) % bd.x, static_cast<unsigned>(i) / bd.x % bd.y,
                         static_cast<unsigned>(i) / (bd.x * bd.y)};
    t.view.state = &t;
    t.open_group.clear();
    t.committed.clear();
    t.fiber.Start(&ThreadMain, &t, StackBytes());
  }
  e.live = e.n_threads;
  e.at_barrier = 0;
  std::vector<unsigned char> smem;
  if (e.config->dynamic_smem > 0) {
    // Exactly the launch's bytes (ASan sees a read past them), poisoned: NaN in float and bf16.
    smem.assign(e.config->dynamic_smem, 0xff);
    e.dynamic_smem = smem.data();
  } else {
    e.dynamic_smem = nullptr;
  }
  while (e.live > 0) {
    bool ran = false;
    for (int k = 0; k < e.n_threads; ++k) {
      ThreadState& t = *e.threads[reverse ? e.n_threads - 1 - k : k];
      if (t.wait != Wait::kNone) continue;
      e.current = &t;
      t.fiber.Resume();
      e.current = nullptr;
      ran = true;
    }
    if (!ran && e.live > 0) Deadlock();
  }
  e.dynamic_smem = nullptr;
}

// Blocks the calling fiber until the scheduler finds it runnable again.
void Park(ThreadState& t, Wait why) {
  t.wait = why;
  t.fiber.Yield();
}

// The last lane to arrive computes every lane's result.
void FinishCollective(Emulation& e, ThreadState& last, int warp_base) {
  ThreadState* lanes[32] = {};
  for (int l = 0; l < 32; ++l) {
    if (last.mask & (1u << l)) lanes[l] = e.threads[warp_base + l].get();
  }
  const int width = last.width;
  uint64_t vote = 0;
  bool any = false, all = true;
  for (int l = 0; l < 32; ++l) {
    if (lanes[l] == nullptr) continue;
    const bool pred = lanes[l]->in != 0;
    if (pred) vote |= uint64_t{1} << l;
    any = any || pred;
    all = all && pred;
  }
  void* pieces[32] = {};
  for (int l = 0; l < 32; ++l) {
    if (lanes[l] != nullptr) pieces[l] = lanes[l]->piece;
  }
  for (int l = 0; l < 32; ++l) {
    ThreadState* t = lanes[l];
    if (t == nullptr) continue;
    const int seg = l / width * width;
    int src = l;
    switch (last.kind) {
      case Collective::kShflXor:
        src = l ^ t->arg;
        if (src >= seg + width) src = l;
        break;
      case Collective::kShflUp:
        src = l - t->arg;
        if (src < seg) src = l;
        break;
      case Collective::kShflDown:
        src = l + t->arg;
        if (src >= seg + width) src = l;
        break;
      case Collective::kShflIdx:
        src = seg + ((t->arg % width) + width) % width;
        break;
      default:
        break;
    }
    switch (last.kind) {
      case Collective::kShflXor:
      case Collective::kShflUp:
      case Collective::kShflDown:
      case Collective::kShflIdx:
        if (src < 0 || src >= 32 || lanes[src] == nullptr) {
          Fail(t, std::string(CollectiveName(last.kind)) + " reads lane " + std::to_string(src) +
                      ", which is not in the mask");
        }
        t->out = lanes[src]->in;
        break;
      case Collective::kBallot:
        t->out = vote;
        break;
      case Collective::kAny:
        t->out = any;
        break;
      case Collective::kAll:
        t->out = all;
        break;
      default:
        t->out = 0;
        break;
    }
  }
  if (last.kind == Collective::kWmma && last.in != 0) {
    (*reinterpret_cast<const std::function<void(void* const*)>*>(last.in))(pieces);
  }
  for (int l = 0; l < 32; ++l) {
    if (lanes[l] != nullptr && lanes[l] != &last) lanes[l]->wait = Wait::kNone;
  }
}

uint64_t Arrive(Collective kind, unsigned mask, uint64_t in, int arg, int width, const char* what,
                void* piece) {
  Emulation& e = Emu();
  ThreadState& t = *e.current;
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    Fail(&t, "shuffle width not 2^n <= 32");
  const int lane = t.index % 32;
  const int warp_base = t.index - lane;
  if ((mask & (1u << lane)) == 0)
    Fail(&t, std::string(CollectiveName(kind)) + ": own lane not in mask");
  t.kind = kind;
  t.mask = mask;
  t.in = in;
  t.arg = arg;
  t.width = width;
  t.what = what;
  t.piece = piece;
  bool complete = true;
  for (int l = 0; l < 32; ++l) {
    if ((mask & (1u << l)) == 0 || l == lane) continue;
    if (warp_base + l >= e.n_threads) {
      Fail(&t, std::string(CollectiveName(kind)) + ": the mask names lane " + std::to_string(l) +
                   ", which the block does not have");
    }
    const ThreadState& o = *e.threads[warp_base + l];
    if (o.wait == Wait::kDone) {
      Fail(&t, std::string(CollectiveName(kind)) + ": lane " + std::to_string(l) +
                   " of the mask has exited");
    }
    if (o.wait != Wait::kWarp) {
      complete = false;
      continue;
    }
    if (o.kind != kind || o.mask != mask) {
      Fail(&t, std::string("divergent warp collectives: this lane is at ") + CollectiveName(kind) +
                   ", lane " + std::to_string(l) + " at " + CollectiveName(o.kind) +
                   " (or another mask)");
    }
  }
  if (complete) {
    FinishCollective(e, t, warp_base);
  } else {
    Park(t, Wait::kWarp);
  }
  return t.out;
}

}  // namespace

const ThreadView& Here() {
  ThreadState* t = Emu().current;
  if (t == nullptr) Fail(nullptr, "threadIdx/blockIdx used outside a kernel");
  return t->view;
}

void SyncThreads() {
  Emulation& e = Emu();
  ThreadState& t = *e.current;
  if (++e.at_barrier == e.live) {
    for (int i = 0; i < e.n_threads; ++i) {
      if (e.threads[i]->wait == Wait::kBarrier) e.threads[i]->wait = Wait::kNone;
    }
    e.at_barrier = 0;
    return;
  }
  Park(t, Wait::kBarrier);
}

uint64_t WarpCollective(Collective kind, unsigned mask, uint64_t in, int arg, int width) {
  return Arrive(kind, mask, in, arg, width, CollectiveName(kind), nullptr);
}

void WarpGather(const char* what, void* piece, const std::function<void(void* const*)>& all) {
  // `in` carries the function of the last lane to arrive (any lane's is the same operation).
  Arrive(Collective::kWmma, 0xffffffffu, all ? reinterpret_cast<uint64_t>(&all) : 0, 0, 32, what,
         piece);
}

void PipelineCopy(void* dst, const void* src, size_t bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) Fail(Emu().current, "cp.async of 4, 8 or 16 bytes");
  if (reinterpret_cast<uintptr_t>(dst) % bytes != 0 ||
      reinterpret_cast<uintptr_t>(src) % bytes != 0) {
    Fail(Emu().current, "cp.async with a misaligned source or destination");
  }
  Emu().current->open_group.push_back({dst, src, bytes});
}

void PipelineCommit() {
  ThreadState& t = *Emu().current;
  t.committed.push_back(std::move(t.open_group));
  t.open_group.clear();
}

void PipelineWaitPrior(size_t pending) {
  ThreadState& t = *Emu().current;
  while (t.committed.size() > pending) {
    CompleteCopies(t.committed.front());
    t.committed.pop_front();
  }
}

void Trap() { Fail(Emu().current, "__trap() (the kernel's own check failed)"); }

unsigned char* DynamicShared() {
  Emulation& e = Emu();
  if (e.dynamic_smem == nullptr) Fail(e.current, "extern __shared__ used by a launch of 0 bytes");
  return e.dynamic_smem;
}

void RunGrid(const LaunchConfig& config, const std::function<void()>& body) {
  Emulation& e = Emu();
  std::lock_guard<std::mutex> lock(e.one_launch_at_a_time);
  const dim3& b = config.block;
  const dim3& g = config.grid;
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  if (threads == 0 || threads > kMaxThreads || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
      g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    e.last_error = cudaErrorInvalidConfiguration;
    return;
  }
  const auto limit = e.smem_limits.find(config.kernel);
  if (config.dynamic_smem > (limit != e.smem_limits.end() ? limit->second : kDefaultSmemLimit)) {
    e.last_error = cudaErrorInvalidValue;  // what the runtime says for too much shared memory
    return;
  }
  if (e.threads.empty()) {
    for (int i = 0; i < kMaxThreads; ++i) e.threads.push_back(std::make_unique<ThreadState>());
  }
  e.config = &config;
  e.body = &body;
  e.n_threads = static_cast<int>(threads);
  uint64_t linear = 0;
  for (unsigned z = 0; z < g.z; ++z) {
    for (unsigned y = 0; y < g.y; ++y) {
      for (unsigned x = 0; x < g.x; ++x) RunBlock(e, uint3{x, y, z}, (linear++ & 1) != 0);
    }
  }
  e.config = nullptr;
  e.body = nullptr;
}

cudaError_t SetFuncAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > kOptinSmemLimit) return cudaErrorInvalidValue;
    Emu().smem_limits[kernel] = static_cast<size_t>(value);
  }
  return cudaSuccess;
}

}  // namespace dsv2::emu

cudaError_t cudaGetLastError() {
  const cudaError_t e = dsv2::emu::Emu().last_error;
  dsv2::emu::Emu().last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return dsv2::emu::Emu().last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
  }
  return "unknown error";
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int /*device*/) {
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = 48 << 10;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = 227 << 10;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = 16;
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, int, cudaStream_t) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
