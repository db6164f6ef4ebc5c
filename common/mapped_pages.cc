#include "common/mapped_pages.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace dsv2 {

absl::StatusOr<MappedFile> MapFileReadOnly(const std::string& path, int64_t min_size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", std::strerror(err)));
  }
  MappedFile f{.map = nullptr, .size = st.st_size};
  if (f.size < std::max<int64_t>(min_size, 1)) {
    ::close(fd);
    return f;
  }
  void* map = mmap(nullptr, static_cast<size_t>(f.size), PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", std::strerror(err)));
  }
  f.map = map;
  return f;
}

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
