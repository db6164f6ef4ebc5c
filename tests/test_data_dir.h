// Where the test fixtures are: $DSV2_TEST_DATA_DIR when set (test binaries carried to another
// machine, e.g. by scripts/gpu-check.sh), else the source tree's tests/data compiled in. The
// built-in demo model likewise: $DSV2_DEMO_MODEL, else the source tree's assets/demo-model.
#pragma once

#include <cstdlib>
#include <string>

namespace dsv2 {

inline std::string TestDataDir() {
  const char* env = std::getenv("DSV2_TEST_DATA_DIR");
  return env != nullptr && *env != '\0' ? env : DSV2_TEST_DATA_DIR;
}

inline std::string TestDemoModelDir() {
  const char* env = std::getenv("DSV2_DEMO_MODEL");
  return env != nullptr && *env != '\0' ? env : DSV2_TEST_DEMO_MODEL_DIR;
}

}  // namespace dsv2
