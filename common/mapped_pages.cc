#include "common/mapped_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace dsv2 {

bool PopulateMappedPages(void* map, int64_t size, int64_t offset, int64_t length) {
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older kernels answer EINVAL
#endif
  if (map == nullptr || offset < 0 || length <= 0 || offset + length > size) return false;
  const int64_t page = sysconf(_SC_PAGESIZE);
  const int64_t begin = offset / page * page;  // madvise wants a page-aligned start
  return madvise(static_cast<uint8_t*>(map) + begin, static_cast<size_t>(offset + length - begin),
                 MADV_POPULATE_READ) == 0;
}

int64_t AvailableMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace dsv2
