#include "kernels/workspace.h"

#include <algorithm>
#include <cstdio>

#include "kernels/check.h"

namespace dsv2 {
namespace {

constexpr int64_t kAlign = 256;
int64_t RoundUp(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

}  // namespace

Workspace::Workspace(Device device, int64_t initial_bytes) : device_(device) {
  if (initial_bytes > 0) {
    absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(device_, RoundUp(initial_bytes));
    DSV2_CHECK_MSG(b.ok(), "Workspace: the first block could not be allocated");
    blocks_.push_back(*std::move(b));
  }
}

int64_t Workspace::capacity() const {
  int64_t c = 0;
  for (const DeviceBuffer& b : blocks_) c += b.bytes();
  return c;
}

void* Workspace::Alloc(int64_t bytes) {
  DSV2_CHECK(bytes >= 0);
  const int64_t size = RoundUp(std::max<int64_t>(bytes, 1));
  if (blocks_.empty() || offset_ + size > blocks_.back().bytes()) {
    // Overflow: a new block for this step (at least as large as everything so far, so that a
    // growing step needs few of them). Reset() merges the blocks into one.
    const int64_t block = std::max(size, std::max<int64_t>(capacity(), 1 << 20));
    absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(device_, block);
    if (!b.ok()) {
      std::fprintf(stderr, "Workspace: %s\n", b.status().ToString().c_str());
      DSV2_CHECK_MSG(false, "Workspace: out of memory for step temporaries");
    }
    if (!blocks_.empty()) ++overflows_;
    blocks_.push_back(*std::move(b));
    offset_ = 0;
  }
  void* p = static_cast<char*>(blocks_.back().data()) + offset_;
  offset_ += size;
  used_ += size;
  high_water_ = std::max(high_water_, used_);
  return p;
}

void Workspace::Rewind(const Mark& mark) {
  used_ = mark.used;
  // Blocks added since the mark stay (Reset merges them); the newest one is reused from 0.
  offset_ = blocks_.size() == mark.blocks ? mark.offset : 0;
}

void Workspace::Reset() {
  if (blocks_.size() > 1) {
    // Callers reset between steps, after the stream has consumed the temporaries (CUDA frees
    // are stream-synchronous), so the old blocks can go.
    const int64_t want = RoundUp(high_water_);
    blocks_.clear();
    absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(device_, want);
    DSV2_CHECK_MSG(b.ok(), "Workspace: out of memory merging blocks");
    blocks_.push_back(*std::move(b));
  }
  offset_ = 0;
  used_ = 0;
}

}  // namespace dsv2
