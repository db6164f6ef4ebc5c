# The stages of `scripts/gpu-check.sh run` and the machinery that bounds and records them
# (sourced by gpu-check.sh). Globals set by run(): GC_BIN (unpacked programs), GC_OUT (the
# output folder), GC_WORK, GC_LOGS, GC_RESULTS, GC_DEADLINE, GC_T0, GC_BUDGET.

readonly GC_RESERVE=10  # seconds kept back for the last summary and the logs archive
readonly GC_STAGES=9
GC_PIDS=()

report() { python3 "$ROOT/scripts/gpu_check_report.py" "$@"; }

# Seconds left in the running stage (at least 1).
left_s() {
  local l=$((GC_STAGE_END - SECONDS))
  [ "$l" -lt 1 ] && l=1
  echo "$l"
}
# A command bounded by what is left of the stage; TERM, then KILL 5 s later.
bounded() { timeout -k 5 "$(left_s)" "$@"; }

fail_stage() {
  GC_STATUS=fail
  GC_DETAIL="${GC_DETAIL:+$GC_DETAIL; }$*"
}
note() { GC_DETAIL="${GC_DETAIL:+$GC_DETAIL; }$*"; }
row() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$GC_WORK/rows"; }

# A background process of this stage, stopped by stop_all when the stage ends.
start_bg() {  # log cmd...
  local log="$1"
  shift
  "$@" >"$log" 2>&1 &
  GC_PIDS+=($!)
}
# TERM every background process, wait at most 10 s, then KILL: no wait is unbounded.
stop_all() {
  local p alive
  [ "${#GC_PIDS[@]}" -eq 0 ] && return 0
  kill -TERM "${GC_PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 1 20); do
    alive=0
    for p in "${GC_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  kill -KILL "${GC_PIDS[@]}" 2>/dev/null || true
  for p in "${GC_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  GC_PIDS=()
}

# wait_health PORT PID: the server answers health, within the stage's time.
wait_health() {
  while [ "$(left_s)" -gt 2 ]; do
    timeout 5 "$GC_BIN/dsv2-cli" --server "127.0.0.1:$1" --timeout 2 health >/dev/null 2>&1 &&
      return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

# gtest PROGRAM [ARGS]: runs a test program; its verdict joins the stage's. Any skipped test is
# a failure here (this is the machine with the GPU), and so is a program that ran no test.
gtest() {
  local name="$1" log="$GC_STAGE_LOG/$1.log" rc=0
  shift
  bounded "$GC_BIN/$name" --gtest_brief=1 "$@" >"$log" 2>&1 || rc=$?
  local verdict
  verdict=$(report gtest-verdict "$log" "$rc" "$name")
  note "${verdict#* }"
  [ "${verdict%% *}" = pass ] || GC_STATUS=fail
}

run_stage() {  # name seconds function
  local name="$1" allot="$2" fn="$3" t=$SECONDS
  local left=$((GC_DEADLINE - SECONDS - GC_RESERVE))
  GC_STATUS=pass
  GC_DETAIL=""
  : >"$GC_WORK/rows"
  if [ "$allot" -gt "$left" ]; then
    GC_STATUS=skipped
    GC_DETAIL="not started: needs ${allot} s, ${left} s of the budget left"
  else
    GC_STAGE_END=$((SECONDS + allot))
    GC_STAGE_LOG="$GC_LOGS/$name"
    mkdir -p "$GC_STAGE_LOG"
    "$fn" || [ "$GC_STATUS" = fail ] || fail_stage "the stage's script failed"
    stop_all
  fi
  report record "$GC_RESULTS" "$name" "$GC_STATUS" "$((SECONDS - t))" "$allot" "$GC_DETAIL" \
    "$GC_WORK/rows"
  publish
}

# The summary and the logs archive, rewritten atomically, and the table printed compactly.
publish() {
  report summarize "$GC_RESULTS" "$GC_OUT" "$((SECONDS - GC_T0))" "$GC_BUDGET" "$GC_STAGES"
  tar -C "$GC_WORK" -czf "$GC_OUT/logs.tar.gz.tmp" logs 2>/dev/null &&
    mv "$GC_OUT/logs.tar.gz.tmp" "$GC_OUT/logs.tar.gz"
  summarize compact
}
summarize() { report print "$GC_OUT/summary.json" "$1"; }

# ---- The stages -----------------------------------------------------------------------------

stage_device() {
  if command -v nvidia-smi >/dev/null; then
    local facts
    facts=$(bounded nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
      --format=csv,noheader 2>&1 | head -n 1) || true
    row "GPU (name, memory, driver, compute capability)" "${facts:-nvidia-smi said nothing}"
    note "$facts"
  else
    fail_stage "nvidia-smi not found: no GPU driver on this machine"
  fi
  local missing b
  for b in "$GC_BIN"/*; do
    missing=$(ldd "$b" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
    [ -n "$missing" ] && fail_stage "$(basename "$b") cannot load: ${missing}"
  done
  local json="$GC_STAGE_LOG/bandwidth.json"
  if bounded "$GC_BIN/model_bench" --device cuda --bandwidth-only --runs 3 --json "$json" \
    >"$GC_STAGE_LOG/bandwidth.log" 2>&1; then
    report bandwidth-rows "$json" >>"$GC_WORK/rows"
  else
    fail_stage "copy bandwidth: $(tail -n 1 "$GC_STAGE_LOG/bandwidth.log")"
  fi
}

stage_ops() { gtest ops_cuda_test; }
stage_golden_f32() { gtest golden_cuda_test; }
stage_golden_bf16() {
  gtest golden_bf16_cuda_test
  gtest decode_graphs_cuda_test
}
stage_engine_server() {
  gtest engine_cuda_test
  gtest server_cuda_test
}

stage_bench() {
  local json="$GC_STAGE_LOG/model_bench.json"
  if bounded "$GC_BIN/model_bench" --synthetic v2-lite --device cuda --dtype bfloat16 \
    --batch-sizes 1,32,128,256 --prefill-tokens 2048 --decode-tokens 16 --runs 3 \
    --json "$json" >"$GC_STAGE_LOG/model_bench.md" 2>"$GC_STAGE_LOG/model_bench.log"; then
    report bench-rows "$json" >>"$GC_WORK/rows"
  else
    fail_stage "$(tail -n 1 "$GC_STAGE_LOG/model_bench.log")"
  fi
}

# load_run NAME PORT: 64 streams for SECONDS against the server on PORT, JSON in the stage log.
load_run() {
  local secs="$3"
  bounded "$GC_BIN/load_generator" --server "127.0.0.1:$2" --concurrency 64 --duration "$secs" \
    --prompt-len 128 --max-new-tokens 128 --json "$GC_STAGE_LOG/$1.json" \
    >"$GC_STAGE_LOG/$1.md" 2>"$GC_STAGE_LOG/$1.log"
}

stage_load() {
  local port=50151
  start_bg "$GC_STAGE_LOG/coordinator.log" "$GC_BIN/dsv2-coordinator" --synthetic v2-lite \
    --device cuda --port "$port" --host 127.0.0.1 --http-port 0 --max-running 256 \
    --max-batch-tokens 2048
  if ! wait_health "$port" "${GC_PIDS[-1]}"; then
    fail_stage "the coordinator did not come up: $(tail -n 1 "$GC_STAGE_LOG/coordinator.log")"
    return
  fi
  if load_run load "$port" "${DSV2_GPU_CHECK_LOAD_SECONDS:-20}"; then
    report load-rows "$GC_STAGE_LOG/load.json" "server, 64 streams" >>"$GC_WORK/rows"
  else
    fail_stage "load_generator: $(tail -n 1 "$GC_STAGE_LOG/load.log")"
  fi
}

# Coordinator + 2 dsv2-worker --device cuda on the one GPU over TCP: the test program, then a
# V2-Lite-shaped checkpoint (2 decoder layers: ~3 GB to write) standalone and split.
stage_expert_parallel() {
  gtest expert_parallel_cuda_test --gtest_filter='*TwoGpuWorkersOverTcp*'
  note "two-GPU NCCL cases not run: one GPU"
  local ckpt="$GC_WORK/ep-checkpoint" port=50161 secs="${DSV2_GPU_CHECK_EP_SECONDS:-12}"
  if ! bounded "$GC_BIN/dsv2-make-checkpoint" --out "$ckpt" --preset v2-lite \
    --layers "${DSV2_GPU_CHECK_EP_LAYERS:-2}" >"$GC_STAGE_LOG/checkpoint.log" 2>&1; then
    fail_stage "dsv2-make-checkpoint: $(tail -n 1 "$GC_STAGE_LOG/checkpoint.log")"
    return
  fi
  local common=(--model "$ckpt" --device cuda --port "$port" --host 127.0.0.1 --http-port 0
    --max-running 64 --max-batch-tokens 2048)
  start_bg "$GC_STAGE_LOG/standalone.log" "$GC_BIN/dsv2-coordinator" "${common[@]}"
  if ! wait_health "$port" "${GC_PIDS[-1]}" || ! load_run ep_standalone "$port" "$secs"; then
    fail_stage "standalone: $(tail -n 1 "$GC_STAGE_LOG/standalone.log")"
    return
  fi
  stop_all
  local w
  for w in 1 2; do
    start_bg "$GC_STAGE_LOG/worker$w.log" "$GC_BIN/dsv2-worker" --model "$ckpt" --device cuda \
      --rank "$w" --host 127.0.0.1 --port $((port + 10 * w)) --data-port $((port + 10 * w + 1))
  done
  start_bg "$GC_STAGE_LOG/coordinator.log" "$GC_BIN/dsv2-coordinator" "${common[@]}" \
    --gpu-memory-fraction 0.35 --worker-timeout 30 \
    --workers "127.0.0.1:$((port + 10)),127.0.0.1:$((port + 20))"
  if ! wait_health "$port" "${GC_PIDS[-1]}" || ! load_run ep_two_workers "$port" "$secs"; then
    fail_stage "coordinator + 2 workers: $(tail -n 1 "$GC_STAGE_LOG/coordinator.log")"
    return
  fi
  report ep-rows "$GC_STAGE_LOG/ep_standalone.json" "$GC_STAGE_LOG/ep_two_workers.json" \
    >>"$GC_WORK/rows"
}

# Memory errors are judged by compute-sanitizer's ERROR SUMMARY alone; the tests' own verdict
# is reported beside it.
stage_memcheck() {
  local sanitizer
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ ! -x "$sanitizer" ]; then
    fail_stage "compute-sanitizer not found"
    return
  fi
  local log="$GC_STAGE_LOG/memcheck.log" rc=0
  bounded "$sanitizer" --tool memcheck --error-exitcode 9 "$GC_BIN/ops_cuda_test" \
    --gtest_brief=1 >"$log" 2>&1 || rc=$?
  local errors
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$' || true)
  if [ -z "$errors" ]; then
    fail_stage "no ERROR SUMMARY (exit $rc$([ "$rc" = 124 ] && echo ': timed out'))"
  elif [ "$errors" != 0 ]; then
    fail_stage "$errors memory errors (first: $(grep -m1 -E '^========= (Invalid|Program hit)' "$log"))"
  else
    note "0 memory errors"
  fi
  local verdict
  verdict=$(report gtest-verdict "$log" "$([ "$rc" = 9 ] && echo 0 || echo "$rc")" ops_cuda_test)
  note "tests under memcheck: ${verdict#* }"
  [ "${verdict%% *}" = pass ] || GC_STATUS=fail
}
