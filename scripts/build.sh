#!/usr/bin/env bash
# Release build into build/ (executables in build/bin/, tests in build/tests/).
# Extra arguments go to CMake, e.g. scripts/build.sh -DDSV2_WITH_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."

jobs="${DSV2_BUILD_JOBS:-$(nproc)}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$jobs"
echo "build.sh: executables in $(pwd)/build/bin"
