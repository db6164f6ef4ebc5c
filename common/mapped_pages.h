// Mapping the pages of an mmap'ed model file into the process ahead of use (the safetensors and
// GGUF readers share it).
#pragma once

#include <cstdint>

namespace dsv2 {

// MADV_POPULATE_READ over bytes [offset, offset + length) of the mapping `map` of `size`
// bytes; false where that failed (old kernel, bad range, no mapping).
bool PopulateMappedPages(void* map, int64_t size, int64_t offset, int64_t length);

// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
int64_t AvailableMemoryBytes();

}  // namespace dsv2
