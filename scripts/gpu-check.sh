#!/usr/bin/env bash
# The GPU proof in two halves (DESIGN.md, "Verifying GPU code on machines without a GPU"):
#
#   scripts/gpu-check.sh pack [DIR]      # here (Debian 12 + CUDA toolkit): build for sm_90 in
#                                        # build-gpu/, pack the GPU tests, the programs and the
#                                        # non-system libraries into ONE archive,
#                                        # DIR/dsv2-gpu-pack.tar.xz (DIR: gpu-pack/, ignored by
#                                        # git); prints what will travel (the tree the device
#                                        # tool sends plus the archive) and refuses above 56 MiB
#   scripts/gpu-check.sh run [--budget S] [--out DIR] [ARCHIVE]
#                                        # there (driver, CUDA toolkit, Python; no apt, gRPC or
#                                        # abseil): unpacks ARCHIVE (default
#                                        # gpu-pack/dsv2-gpu-pack.tar.xz) to a temporary folder
#                                        # and runs the stages below under one budget (S seconds,
#                                        # default 420); DIR defaults to $OUT, else gpu-check-out
#   scripts/gpu-check.sh rehearse [--mechanical]
#                                        # here, no GPU: pack and run for real (or, with
#                                        # --mechanical, stand-in programs instead of the build),
#                                        # then checks the sizes, the budget arithmetic, at most 8
#                                        # files, the summary after every stage, and that a run
#                                        # killed halfway still leaves a readable summary
#
# Stages, in the order of what they prove (seconds each may take at most):
#   device (25): GPU facts, libraries resolve, device copy bandwidth
#   ops (60): CUDA op parity, every op against its CPU twin
#   golden-f32 (60): the golden fixtures in float32 at the CPU's bar
#   golden-bf16 (75): the fixtures in bfloat16, CUDA-graph replay equal to eager
#   engine-server (100): the engine and the gRPC server with the model on the GPU
#   bench (100): model_bench --synthetic v2-lite, graphed decode with eager beside it, prefill
#   load (70): 64 streams against dsv2-coordinator --synthetic v2-lite
#   expert-parallel (130): coordinator + 2 GPU workers over TCP on the one GPU, tests and load
#   memcheck (100): compute-sanitizer memcheck over the op tests
# A stage starts only if its seconds fit in what is left of the budget, else it is skipped and
# says so. After every stage DIR/summary.md, DIR/summary.json and DIR/logs.tar.gz (every log)
# are rewritten and the table is printed compactly: a run killed at any point leaves the table
# of what finished, in three files. On a machine with a GPU a skipped test is a failure.
#
# With the device tool: `scripts/gpu-check.sh pack` here, then one run call with
# carry ["gpu-pack"] and the command `scripts/gpu-check.sh run --out $OUT` (timeout_s at least
# the budget + 60), then give the machine back unless a second run follows at once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { echo "gpu-check: $*" >&2; }
die() { say "$*"; exit 1; }

readonly LIMIT_MIB=56
readonly ARCHIVE_NAME=dsv2-gpu-pack.tar.xz
readonly PACK_BINS=(tests/ops_cuda_test tests/golden_cuda_test tests/golden_bf16_cuda_test
  tests/engine_cuda_test tests/server_cuda_test tests/decode_graphs_cuda_test
  tests/expert_parallel_cuda_test bin/model_bench bin/dsv2-coordinator bin/dsv2-worker
  bin/dsv2-make-checkpoint bin/dsv2-cli bin/load_generator)

# Libraries the GPU machine has itself (the driver, the toolkit's, the C runtime) never travel.
is_system_lib() {
  case "$(basename "$1")" in
    libcuda.so* | libcublas* | libnccl* | libnvidia* | libc.so* | libm.so* | libdl.so* | \
      libpthread.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so* | linux-vdso*)
      return 0 ;;
  esac
  return 1
}

# Bytes the device tool sends besides carried paths: tracked files and untracked ones git does
# not ignore.
tree_bytes() {
  git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s -- 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

# check_travel ARCHIVE: prints what travels and fails above LIMIT_MIB.
check_travel() {
  local archive="$1" tree arch total
  tree=$(tree_bytes)
  arch=$(stat -c %s "$archive")
  total=$((tree + arch))
  say "travels: tree $(mib "$tree") MiB + archive $(mib "$arch") MiB = $(mib "$total") MiB" \
    "(limit ${LIMIT_MIB} MiB; the device tool takes 64)"
  if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    say "over ${LIMIT_MIB} MiB: it would not travel with room to spare"
    return 1
  fi
}

# make_archive STAGING ARCHIVE: one xz archive of the staging folder (Python's tarfile reads it
# where no xz program is installed).
make_archive() {
  local staging="$1" archive="$2"
  mkdir -p "$(dirname "$archive")"
  tar -C "$staging" -cf - . | xz -9e -T "${DSV2_BUILD_JOBS:-$(nproc)}" >"$archive.tmp"
  mv "$archive.tmp" "$archive"
}

pack() {
  local dir="${1:-gpu-pack}"
  local arch="${DSV2_GPU_CHECK_ARCH:-90}"
  scripts/install-deps.sh
  command -v xz >/dev/null || apt-get install -y -q xz-utils >/dev/null
  say "building for sm_${arch} in build-gpu/"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DDSV2_WITH_CUDA=ON -DDSV2_BUILD_EMU=OFF >/dev/null
  local targets=() b
  for b in "${PACK_BINS[@]}"; do targets+=(--target "$(basename "$b")"); done
  cmake --build build-gpu -j "${DSV2_BUILD_JOBS:-$(nproc)}" "${targets[@]}"
  local staging
  staging=$(mktemp -d)
  mkdir -p "$staging/bin" "$staging/lib"
  for b in "${PACK_BINS[@]}"; do
    cp "build-gpu/$b" "$staging/bin/"
    strip "$staging/bin/$(basename "$b")"
  done
  # Every non-system shared library the programs load (abseil, gRPC, protobuf, PCRE2, the CUDA
  # runtime, ...), resolved here.
  local lib
  for b in "$staging"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}'
  done | sort -u | while read -r lib; do
    is_system_lib "$lib" && continue
    cp -L "$lib" "$staging/lib/"
  done
  strip --strip-unneeded "$staging"/lib/* 2>/dev/null || true
  # The fixtures and the demo model travel in the tree (tests/data, assets/demo-model).
  {
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "built $(date -u +%FT%TZ) for sm_${arch}"
  } >"$staging/MANIFEST"
  say "packing $(ls "$staging/bin" | wc -l) programs and $(ls "$staging/lib" | wc -l) libraries" \
    "($(du -sm "$staging" | cut -f1) MB unpacked)"
  make_archive "$staging" "$dir/$ARCHIVE_NAME"
  rm -rf "$staging"
  check_travel "$dir/$ARCHIVE_NAME"
  say "archive: $dir/$ARCHIVE_NAME"
}

# ---- run ------------------------------------------------------------------------------------

# cuBLAS and NCCL of the GPU machine: the toolkit's lib64, or Python's nvidia-* packages.
gpu_library_path() {
  local dirs=() d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
  done
  local py
  py=$(timeout 20 python3 - <<'EOF' 2>/dev/null || true
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
seen = []
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")):
        if d not in seen:
            seen.append(d)
print(":".join(seen))
EOF
)
  local joined
  joined=$(IFS=:; echo "${dirs[*]}")
  echo "${joined}${py:+:$py}"
}

unpack() {  # archive dir
  if command -v xz >/dev/null; then
    tar -C "$2" -xJf "$1"
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
  fi
}

source "$ROOT/scripts/gpu_check_stages.sh"

run() {
  local budget=420 out="${OUT:-$ROOT/gpu-check-out}" archive="gpu-pack/$ARCHIVE_NAME"
  while [ $# -gt 0 ]; do
    case "$1" in
      --budget) budget="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      -*) die "run: unknown option $1" ;;
      *) archive="$1"; shift ;;
    esac
  done
  [[ "$budget" =~ ^[0-9]+$ ]] && [ "$budget" -ge 30 ] || die "run: --budget takes seconds >= 30"
  [ -f "$archive" ] || die "run: no archive at $archive (scripts/gpu-check.sh pack makes it)"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  GC_T0=$SECONDS
  GC_DEADLINE=$((SECONDS + budget))
  GC_OUT="$out"
  GC_WORK=$(mktemp -d)
  GC_LOGS="$GC_WORK/logs"
  GC_RESULTS="$GC_WORK/results.jsonl"
  GC_BUDGET=$budget
  mkdir -p "$GC_LOGS"
  : >"$GC_RESULTS"
  mkdir -p "$GC_WORK/pack"
  unpack "$archive" "$GC_WORK/pack" || die "run: cannot unpack $archive"
  GC_BIN="$GC_WORK/pack/bin"
  export LD_LIBRARY_PATH="$GC_WORK/pack/lib:$(gpu_library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The fixtures and the demo model come with the tree.
  export DSV2_TEST_DATA_DIR="$ROOT/tests/data"
  export DSV2_DEMO_MODEL="$ROOT/assets/demo-model"
  export DSV2_WORKER_BIN="$GC_BIN/dsv2-worker"
  say "budget ${budget} s; unpacked $(cat "$GC_WORK/pack/MANIFEST" 2>/dev/null | tr '\n' ' ')"
  trap 'stop_all; rm -rf "$GC_WORK"' EXIT
  run_stage device 25 stage_device
  run_stage ops 60 stage_ops
  run_stage golden-f32 60 stage_golden_f32
  run_stage golden-bf16 75 stage_golden_bf16
  run_stage engine-server 100 stage_engine_server
  run_stage bench 100 stage_bench
  run_stage load 70 stage_load
  run_stage expert-parallel 130 stage_expert_parallel
  run_stage memcheck 100 stage_memcheck
  say "== summary ($((SECONDS - GC_T0)) s of ${budget}) =="
  summarize full
  local files
  files=$(find "$out" -type f | wc -l)
  say "$files files in $out"
  summarize verdict
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  rehearse) shift; source "$ROOT/scripts/gpu_check_rehearse.sh"; rehearse "$@" ;;
  *) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
