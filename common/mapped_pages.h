// Opening model files as read-only mmaps (the safetensors and GGUF readers share it), and
// mapping their pages into the process ahead of use.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv2 {

struct MappedFile {
  void* map = nullptr;  // null: the file is smaller than asked for, and not mapped
  int64_t size = 0;
};

// `path` opened and mmap'ed read-only (shared) when it holds at least min_size (>= 1) bytes;
// NOT_FOUND / INTERNAL naming the path when it cannot be opened, stat'ed or mapped.
absl::StatusOr<MappedFile> MapFileReadOnly(const std::string& path, int64_t min_size);

// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
int64_t AvailableMemoryBytes();

// Bytes [data, data + bytes) in this process's memory: a weight inside an mmap'ed file.
struct ByteRange {
  const void* data = nullptr;
  int64_t bytes = 0;
};

// Maps the pages of `ranges` (merged where they share pages) into this process now
// (MADV_POPULATE_READ, 256 MiB at a time, `progress(done, total)` bytes after each) when they
// fit in half of the memory available: an engine that reads weights in place (the CPU) would
// otherwise take a page fault at the first touch of each page inside a forward pass (a routed
// expert's first use read at ~13 GB/s instead of ~34, model_bench --profile). The weights a
// process binds, not every page of their files: a coordinator whose routed experts live on
// workers maps none of theirs. A hint: returns whether it mapped everything, never fails. From
// a cold page cache this reads the files from disk.
bool PrefaultRanges(std::vector<ByteRange> ranges,
                    const std::function<void(int64_t done, int64_t total)>& progress);

}  // namespace dsv2
