#include "kernels/op_profile.h"

namespace dsv2 {

void OpProfile::Add(std::string_view name, double seconds, int64_t bytes) {
  for (Entry& e : entries_) {
    if (e.name == name) {
      e.seconds += seconds;
      e.bytes += bytes;
      ++e.calls;
      return;
    }
  }
  entries_.push_back({std::string(name), seconds, bytes, 1});
}

double OpProfile::total_seconds() const {
  double s = 0;
  for (const Entry& e : entries_) s += e.seconds;
  return s;
}

}  // namespace dsv2
