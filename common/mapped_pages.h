// Mapping the pages of an mmap'ed model file into the process ahead of use (the safetensors and
// GGUF readers share it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace dsv2 {

struct MappedFile {
  void* map = nullptr;  // null: the file is smaller than asked for, and not mapped
  int64_t size = 0;
};

// `path` opened and mmap'ed read-only (shared) when it holds at least min_size (>= 1) bytes;
// NOT_FOUND / INTERNAL naming the path when it cannot be opened, stat'ed or mapped.
absl::StatusOr<MappedFile> MapFileReadOnly(const std::string& path, int64_t min_size);

// MADV_POPULATE_READ over bytes [offset, offset + length) of the mapping `map` of `size`
// bytes; false where that failed (old kernel, bad range, no mapping).
bool PopulateMappedPages(void* map, int64_t size, int64_t offset, int64_t length);

// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
int64_t AvailableMemoryBytes();

// Maps every page of `files` (pointers to objects with file_size() and PopulatePages(offset,
// length)) 256 MiB at a time, progress(done, total) after each, when their `total` bytes fit in
// half of the available memory; returns whether everything was mapped.
template <typename Files>
bool PrefaultFiles(const Files& files, int64_t total,
                   const std::function<void(int64_t done, int64_t total)>& progress) {
  if (total > AvailableMemoryBytes() / 2) return false;
  constexpr int64_t kChunk = int64_t{256} << 20;
  int64_t done = 0;
  for (const auto& f : files) {
    for (int64_t offset = 0; offset < f->file_size(); offset += kChunk) {
      const int64_t length = std::min(kChunk, f->file_size() - offset);
      if (!f->PopulatePages(offset, length)) return false;
      done += length;
      if (progress) progress(done, total);
    }
  }
  return true;
}

}  // namespace dsv2
