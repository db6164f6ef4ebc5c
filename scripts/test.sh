#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test that needs no GPU.
#   scripts/test.sh            # everything
#   scripts/test.sh -R Golden  # extra arguments go to ctest
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure --timeout 600 "$@"
