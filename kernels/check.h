// Programmer-error checks with file:line. Input errors use absl::Status instead (see DESIGN.md).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace dsv2 {

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond,
                                     const char* msg) {
  std::fprintf(stderr, "%s:%d: check failed: %s %s\n", file, line, cond, msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}

}  // namespace dsv2

#define DSV2_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::dsv2::CheckFailed(__FILE__, __LINE__, #cond, nullptr); \
  } while (0)

#define DSV2_CHECK_MSG(cond, msg)                                     \
  do {                                                                \
    if (!(cond)) ::dsv2::CheckFailed(__FILE__, __LINE__, #cond, msg); \
  } while (0)
