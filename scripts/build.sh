#!/usr/bin/env bash
# Release build into build/ (executables in build/bin/, tests in build/tests/).
# Extra arguments go to CMake, e.g. scripts/build.sh -DDSV2_WITH_CUDA=OFF
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

jobs="${DSV2_BUILD_JOBS:-$(nproc)}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$jobs"
echo "build.sh: executables in $(pwd)/build/bin"
