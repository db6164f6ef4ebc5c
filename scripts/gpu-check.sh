#!/usr/bin/env bash
# The GPU proof in two halves (DESIGN.md, "Verifying GPU code on machines without a GPU").
#
#   scripts/gpu-check.sh pack [DIR]   # here (Debian 12 + CUDA toolkit): build for sm_90 in
#                                     # build-gpu/, copy the GPU test binaries, model_bench,
#                                     # dsv2-coordinator, dsv2-cli, load_generator (stripped),
#                                     # the non-system libraries they need and the test fixtures
#                                     # into DIR (default gpu-pack/, git-ignored)
#   scripts/gpu-check.sh run DIR      # on the GPU machine (driver, CUDA 13 toolkit, Python;
#                                     # no apt, gRPC or abseil): GPU tests, compute-sanitizer
#                                     # over the op tests, the full-size synthetic V2-Lite
#                                     # benchmark, a 30 s gRPC load test, expert parallelism
#                                     # on the one GPU (coordinator + 2 workers over TCP)
#                                     # beside standalone at 64 streams; one table last
#
# On the device tool: pack here, then one run call with `carry: ["gpu-pack"]` and the command
# `scripts/gpu-check.sh run gpu-pack`. Environment: DSV2_GPU_CHECK_ARCH (default 90),
# DSV2_GPU_CHECK_LOAD_SECONDS (default 30), DSV2_GPU_CHECK_SKIP_SANITIZER=1,
# DSV2_GPU_CHECK_EP_LAYERS (default 6: the V2-Lite shapes with that many decoder layers, written
# by dsv2-make-checkpoint on the GPU machine), DSV2_GPU_CHECK_EP_SECONDS (default 20 per run),
# DSV2_GPU_CHECK_SKIP_EP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "gpu-check: $*" >&2; }

# Libraries the GPU machine has itself (the driver, the toolkit's, the C runtime) never travel.
is_system_lib() {
  case "$(basename "$1")" in
    libcuda.so* | libcublas* | libnccl* | libnvidia* | libc.so* | libm.so* | libdl.so* | \
      libpthread.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so* | linux-vdso*)
      return 0 ;;
  esac
  return 1
}

pack() {
  local out="${1:-gpu-pack}"
  local arch="${DSV2_GPU_CHECK_ARCH:-90}"
  local bins=(tests/ops_cuda_test tests/golden_cuda_test tests/golden_bf16_test
    tests/engine_cuda_test tests/server_cuda_test tests/decode_graphs_cuda_test
    tests/expert_parallel_cuda_test bin/model_bench bin/dsv2-coordinator bin/dsv2-worker
    bin/dsv2-make-checkpoint bin/dsv2-cli bin/load_generator)
  scripts/install-deps.sh
  say "building for sm_${arch} in build-gpu/"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DDSV2_WITH_CUDA=ON >/dev/null
  local targets=()
  for b in "${bins[@]}"; do targets+=(--target "$(basename "$b")"); done
  cmake --build build-gpu -j "${DSV2_BUILD_JOBS:-$(nproc)}" "${targets[@]}"
  rm -rf "$out"
  mkdir -p "$out/bin" "$out/lib" "$out/data"
  for b in "${bins[@]}"; do
    cp "build-gpu/$b" "$out/bin/"
    strip "$out/bin/$(basename "$b")"
  done
  # Every non-system shared library the binaries load (abseil, gRPC, protobuf, PCRE2, the
  # CUDA runtime, ...), resolved here.
  local lib
  for b in "$out"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}'
  done | sort -u | while read -r lib; do
    is_system_lib "$lib" && continue
    cp -L "$lib" "$out/lib/"
  done
  strip --strip-unneeded "$out"/lib/* 2>/dev/null || true
  cp -r tests/data/golden "$out/data/"
  local size
  size=$(du -sm "$out" | cut -f1)
  say "packed $(ls "$out/bin" | wc -l) programs and $(ls "$out/lib" | wc -l) libraries into" \
    "$out (${size} MB)"
  if [ "$size" -ge 60 ]; then
    say "the pack is over 60 MB"
    exit 1
  fi
}

# cuBLAS and NCCL of the GPU machine: the toolkit's lib64, or Python's nvidia-* packages.
gpu_library_path() {
  local dirs=()
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
  done
  local py
  py=$(python3 - <<'EOF' 2>/dev/null || true
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

# Expert parallelism on the one GPU: a random checkpoint of the V2-Lite shapes (fewer layers, to
# fit the time), standalone and then coordinator + 2 workers over TCP, 64 streams each.
wait_health() {  # bin port pid
  for _ in $(seq 1 480); do
    "$1/dsv2-cli" --server "127.0.0.1:$2" --timeout 2 health >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

expert_parallel_section() {
  local bin="$1" out="$2"
  local ckpt="${DSV2_GPU_CHECK_EP_DIR:-/tmp/dsv2-ep-checkpoint}"
  local secs="${DSV2_GPU_CHECK_EP_SECONDS:-20}" layers="${DSV2_GPU_CHECK_EP_LAYERS:-6}"
  local port=50161 ok=0 pids=()
  say "== expert parallelism: V2-Lite shapes, ${layers} layers, 64 streams, ${secs} s per run =="
  rm -rf "$ckpt"
  "$bin/dsv2-make-checkpoint" --out "$ckpt" --preset v2-lite --layers "$layers" >&2 || return 1
  local load=("$bin/load_generator" --server "127.0.0.1:$port" --concurrency 64
    --duration "$secs" --prompt-len 128 --max-new-tokens 128)
  "$bin/dsv2-coordinator" --model "$ckpt" --device cuda --port "$port" --host 127.0.0.1 \
    --max-running 64 --max-batch-tokens 2048 >"$out/ep_standalone.log" 2>&1 &
  pids=($!)
  if wait_health "$bin" "$port" "${pids[0]}"; then
    timeout 180 "${load[@]}" --json "$out/ep_standalone.json" | tee "$out/ep_standalone.md" && ok=1
  else
    say "standalone coordinator did not come up:"; tail -n 20 "$out/ep_standalone.log" >&2
  fi
  kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true
  [ "$ok" = 1 ] || return 1
  ok=0
  pids=()
  local w
  for w in 1 2; do
    "$bin/dsv2-worker" --model "$ckpt" --device cuda --rank "$w" --host 127.0.0.1 \
      --port $((port + 10 * w)) --data-port $((port + 10 * w + 1)) >"$out/ep_worker$w.log" 2>&1 &
    pids+=($!)
  done
  # The coordinator keeps the weights it does not hand out plus a cache; the workers upload
  # their halves of the routed experts to the same GPU when they are configured.
  "$bin/dsv2-coordinator" --model "$ckpt" --device cuda --port "$port" --host 127.0.0.1 \
    --max-running 64 --max-batch-tokens 2048 --gpu-memory-fraction 0.35 \
    --workers "127.0.0.1:$((port + 10)),127.0.0.1:$((port + 20))" \
    --worker-timeout 30 >"$out/ep_coordinator.log" 2>&1 &
  pids=("$!" "${pids[@]}")
  if wait_health "$bin" "$port" "${pids[0]}"; then
    "$bin/dsv2-cli" --server "127.0.0.1:$port" info >&2 || true
    timeout 180 "${load[@]}" --json "$out/ep_two_workers.json" | tee "$out/ep_two_workers.md" &&
      ok=1
    "$bin/dsv2-cli" --server "127.0.0.1:$port" info >&2 || true
  else
    say "expert-parallel group did not come up:"
    tail -n 20 "$out/ep_coordinator.log" "$out"/ep_worker*.log >&2
  fi
  kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$ckpt"
  [ "$ok" = 1 ]
}

run() {
  local dir="${1:?usage: gpu-check.sh run DIR}"
  dir=$(cd "$dir" && pwd)
  local out="${OUT:-$dir/out}"
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$dir/lib:$(gpu_library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export DSV2_TEST_DATA_DIR="$dir/data"
  export DSV2_WORKER_BIN="$dir/bin/dsv2-worker"
  local bin="$dir/bin"
  local t0=$SECONDS
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader \
    | sed 's/^/gpu-check: GPU: /' >&2 || say "nvidia-smi failed"
  local missing
  missing=$(ldd "$bin/dsv2-coordinator" | grep "not found" || true)
  if [ -n "$missing" ]; then
    say "libraries not found:"; echo "$missing" >&2; exit 1
  fi

  local failed=0
  say "== GPU tests =="
  for t in ops_cuda_test golden_cuda_test golden_bf16_test decode_graphs_cuda_test \
    engine_cuda_test server_cuda_test expert_parallel_cuda_test; do
    if timeout 300 "$bin/$t" --gtest_brief=1 >"$out/$t.log" 2>&1; then
      say "$t: $(grep -E '^\[  (PASSED|SKIPPED) \]' "$out/$t.log" | tr '\n' ' ')"
    else
      failed=1
      say "$t FAILED:"; tail -n 40 "$out/$t.log" >&2
    fi
  done
  local sanitizer=/usr/local/cuda/bin/compute-sanitizer
  if [ -x "$sanitizer" ] && [ "${DSV2_GPU_CHECK_SKIP_SANITIZER:-0}" != 1 ]; then
    say "== compute-sanitizer memcheck over the op tests =="
    if timeout 240 "$sanitizer" --tool memcheck --error-exitcode 9 "$bin/ops_cuda_test" \
        --gtest_brief=1 >"$out/memcheck.log" 2>&1; then
      say "memcheck: $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -n 1)"
    else
      failed=1
      say "memcheck FAILED:"; tail -n 40 "$out/memcheck.log" >&2
    fi
  fi

  say "== model_bench --synthetic v2-lite (bf16) =="
  timeout 240 "$bin/model_bench" --synthetic v2-lite --device cuda --dtype bfloat16 \
    --batch-sizes 1,32,128,256 --prefill-tokens 2048 --decode-tokens 16 --runs 3 \
    --json "$out/model_bench.json" | tee "$out/model_bench.md" || { failed=1; say "model_bench failed"; }

  say "== gRPC load: dsv2-coordinator --synthetic v2-lite, 64 streams =="
  local port=50151
  "$bin/dsv2-coordinator" --synthetic v2-lite --device cuda --port "$port" --host 127.0.0.1 \
    --max-running 256 --max-batch-tokens 2048 >"$out/coordinator.log" 2>&1 &
  local server=$!
  local up=0
  for _ in $(seq 1 240); do
    if "$bin/dsv2-cli" --server "127.0.0.1:$port" --timeout 2 health >/dev/null 2>&1; then
      up=1; break
    fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.5
  done
  if [ "$up" = 1 ]; then
    "$bin/dsv2-cli" --server "127.0.0.1:$port" info >&2 || true
    timeout 120 "$bin/load_generator" --server "127.0.0.1:$port" --concurrency 64 \
      --duration "${DSV2_GPU_CHECK_LOAD_SECONDS:-30}" --prompt-len 128 --max-new-tokens 128 \
      --json "$out/load.json" | tee "$out/load.md" || { failed=1; say "load_generator failed"; }
  else
    failed=1
    say "the coordinator did not come up:"; tail -n 30 "$out/coordinator.log" >&2
  fi
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true

  if [ "${DSV2_GPU_CHECK_SKIP_EP:-0}" != 1 ]; then
    expert_parallel_section "$bin" "$out" || failed=1
  fi

  say "== summary ($((SECONDS - t0)) s) =="
  python3 - "$out" <<'EOF' || true
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:
        return None
b, l = load("model_bench.json"), load("load.json")
es, ep = load("ep_standalone.json"), load("ep_two_workers.json")
rows = []
if b:
    bw = b["bandwidth_gbs"]
    d = {x["batch"]: x["tokens_per_s"] for x in b["decode"]}
    roof = bw * 1e9 / b["decode_bytes_per_token"]
    rows.append(("device copy bandwidth", f"{bw:.0f} GB/s", ""))
    rows.append(("decode batch 1", f"{d.get(1, 0):.1f} tok/s",
                 f"{100 * d.get(1, 0) / roof:.0f}% of roofline ({roof:.0f} tok/s); target >= 50%"))
    for bs, target in ((32, ""), (128, "target >= 10,000"), (256, "target >= 18,000")):
        rows.append((f"decode batch {bs}", f"{d.get(bs, 0):,.0f} tok/s", target))
    rows.append((f"prefill {b['prefill_tokens']} tokens", f"{b['prefill_tokens_per_s']:,.0f} tok/s",
                 "target >= 20,000"))
if l:
    lv = l["levels"][-1]
    rows.append((f"server, {lv['concurrency']} streams", f"{lv['output_tokens_per_s']:,.0f} out tok/s",
                 f"{lv['errors']} errors; target >= 5,000"))
    rows.append(("  TTFT p50 / p99", f"{lv['ttft_ms']['p50']:.0f} / {lv['ttft_ms']['p99']:.0f} ms", ""))
    rows.append(("  ITL p50 / p99", f"{lv['itl_ms']['p50']:.1f} / {lv['itl_ms']['p99']:.1f} ms", ""))
if es and ep:
    s_tps = es["levels"][-1]["output_tokens_per_s"]
    e_tps = ep["levels"][-1]["output_tokens_per_s"]
    ratio = e_tps / s_tps if s_tps else 0
    rows.append((f"EP checkpoint standalone, 64 streams", f"{s_tps:,.0f} out tok/s",
                 f"{es['levels'][-1]['errors']} errors"))
    rows.append((f"EP coordinator + 2 workers (TCP, one GPU)", f"{e_tps:,.0f} out tok/s",
                 f"{ratio:.2f}x standalone; target >= 0.7x; {ep['levels'][-1]['errors']} errors"))
print("| measure | value | note |\n|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
EOF
  return "$failed"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
