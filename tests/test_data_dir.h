// Where the test fixtures are: $DSV2_TEST_DATA_DIR when set (test binaries carried to another
// machine, e.g. by scripts/gpu-check.sh), else the source tree's tests/data compiled in.
#pragma once

#include <cstdlib>
#include <string>

namespace dsv2 {

inline std::string TestDataDir() {
  const char* env = std::getenv("DSV2_TEST_DATA_DIR");
  return env != nullptr && *env != '\0' ? env : DSV2_TEST_DATA_DIR;
}

}  // namespace dsv2
