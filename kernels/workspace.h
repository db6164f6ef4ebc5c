// Workspace: a bump allocator for the temporaries of one step, on the CPU or a CUDA device.
// Alloc never frees; Reset() makes all earlier allocations dead at once. It starts with one
// block; a step that needs more gets an overflow block, and the next Reset() replaces all
// blocks by one as large as the high-water mark, so that after the first step of each size no
// allocation happens on the step path (on CUDA: no cudaMalloc between graph replays).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/device_buffer.h"
#include "kernels/dtype.h"

namespace dsv2 {

class Workspace {
 public:
  explicit Workspace(Device device, int64_t initial_bytes = 0);
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // `bytes` bytes aligned to 256 (what cuBLAS and vector loads like). Never null for bytes > 0.
  void* Alloc(int64_t bytes);
  template <typename T>
  T* Alloc(int64_t count) {
    return static_cast<T*>(Alloc(count * static_cast<int64_t>(sizeof(T))));
  }
  // An allocation of `count` elements of `dtype`.
  void* Alloc(DType dtype, int64_t count) { return Alloc(count * DTypeSize(dtype)); }

  void Reset();

  // Stack discipline inside a step: memory allocated after a mark is reused once the scope that
  // took the mark ends (on CUDA this is stream-ordered, so later kernels may reuse it at once).
  struct Mark {
    size_t blocks = 0;
    int64_t offset = 0;
    int64_t used = 0;
  };
  Mark GetMark() const { return {blocks_.size(), offset_, used_}; }
  void Rewind(const Mark& mark);

  Device device() const { return device_; }
  int64_t capacity() const;                                    // bytes in the blocks held now
  int64_t high_water() const { return high_water_; }           // most bytes one step used
  int64_t overflow_allocations() const { return overflows_; }  // blocks added after the first

 private:
  Device device_;
  std::vector<DeviceBuffer> blocks_;
  int64_t offset_ = 0;  // used bytes of blocks_.back()
  int64_t used_ = 0;    // bytes handed out since Reset()
  int64_t high_water_ = 0;
  int64_t overflows_ = 0;
};

// Rewinds the workspace to where it was at construction when it goes out of scope.
class WorkspaceScope {
 public:
  explicit WorkspaceScope(Workspace& ws) : ws_(ws), mark_(ws.GetMark()) {}
  ~WorkspaceScope() { ws_.Rewind(mark_); }
  WorkspaceScope(const WorkspaceScope&) = delete;
  WorkspaceScope& operator=(const WorkspaceScope&) = delete;

 private:
  Workspace& ws_;
  Workspace::Mark mark_;
};

}  // namespace dsv2
