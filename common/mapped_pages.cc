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

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older kernels answer EINVAL
#endif

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

bool PrefaultRanges(std::vector<ByteRange> ranges,
                    const std::function<void(int64_t done, int64_t total)>& progress) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;  // [begin, end), page-aligned
  for (const ByteRange& r : ranges) {
    if (r.data == nullptr || r.bytes <= 0) continue;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(r.data);
    spans.emplace_back(begin / page * page, (begin + r.bytes + page - 1) / page * page);
  }
  std::sort(spans.begin(), spans.end());
  std::vector<std::pair<uintptr_t, uintptr_t>> merged;
  for (const auto& s : spans) {
    if (!merged.empty() && s.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, s.second);
    } else {
      merged.push_back(s);
    }
  }
  int64_t total = 0;
  for (const auto& s : merged) total += static_cast<int64_t>(s.second - s.first);
  if (total > AvailableMemoryBytes() / 2) return false;
  constexpr uintptr_t kChunk = uintptr_t{256} << 20;
  int64_t done = 0;
  for (const auto& s : merged) {
    for (uintptr_t at = s.first; at < s.second; at += kChunk) {
      const uintptr_t length = std::min(kChunk, s.second - at);
      if (madvise(reinterpret_cast<void*>(at), length, MADV_POPULATE_READ) != 0) return false;
      done += static_cast<int64_t>(length);
      if (progress) progress(done, total);
    }
  }
  return true;
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
