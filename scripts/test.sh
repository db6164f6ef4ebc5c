#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test that needs no GPU.
#   scripts/test.sh            # everything
#   scripts/test.sh -R Golden  # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure --timeout 600 "$@"
