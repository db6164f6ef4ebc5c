#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test that needs no GPU.
#   scripts/test.sh                      # everything
#   scripts/test.sh -R Golden            # extra arguments go to ctest
#   scripts/test.sh --sanitize address   # ASan + UBSan: a separate tree (build-asan), the suite
#   scripts/test.sh --sanitize thread    # TSan (build-tsan) over the engine, server,
#                                        # communicator and worker tests
# The sanitizer trees build without CUDA (the GPU tests skip anyway) and without the benchmarks;
# extra arguments after --sanitize KIND go to ctest as well.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ "${1:-}" != --sanitize ]; then
  scripts/build.sh
  cd build
  exec ctest --output-on-failure --timeout 600 "$@"
fi

kind="${2:-}"
shift 2 || true
case "$kind" in
  address) dir=build-asan; flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
    select=() ;;
  thread) dir=build-tsan; flags="-fsanitize=thread"
    select=(-R "Engine|Server|Drain|Comm|Worker|ExpertParallel|ClusterSecret|Lws|DataPlane|MicroBatch|IdleStreams") ;;
  *) echo "test.sh: --sanitize address|thread" >&2; exit 2 ;;
esac
jobs="${DSV2_BUILD_JOBS:-$(nproc)}"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV2_WITH_CUDA=OFF -DDSV2_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$dir" -j "$jobs"
cd "$dir"
# Suppressions, each justified where it is written: tests/sanitizers/<kind>.supp.
supp="$(pwd)/../tests/sanitizers/$kind.supp"
# A bounded quarantine (16 MB instead of ASan's 256 MB): freed memory waits there to catch
# use-after-free, and filling it would read as growth in the soak's resident-memory check.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:quarantine_size_mb=16"
export UBSAN_OPTIONS="print_stacktrace=1"
# ignore_noninstrumented_modules: memory functions (memmove, epoll_*) called from inside the
# uninstrumented gRPC, protobuf and abseil of Debian are not checked; races in our code are.
tsan="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1"
[ -f "$supp" ] && tsan+=":suppressions=$supp"
export TSAN_OPTIONS="$tsan"
exec ctest --output-on-failure --timeout 1800 -LE "deploy|fuzz|reference" "${select[@]}" "$@"
