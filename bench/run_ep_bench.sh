#!/usr/bin/env bash
# Expert parallelism vs standalone, in one invocation: the same load (bench/load_generator at
# concurrency 1, 8 and 32, greedy, fixed lengths) against dsv2-coordinator alone, then against
# dsv2-coordinator --workers with two dsv2-worker processes on loopback (TCP data plane), once
# with --micro-batches 1 and once with 2 (two-batch overlap), on the 4-layer V2-Lite-shaped
# checkpoint. Prints the tables, the throughput ratios and
# the bytes the data plane moved per token per MoE layer, and how much of the exchange the
# coordinator hid behind its own work (its shard, the shared experts).
#   bench/run_ep_bench.sh [extra load_generator flags]
# Environment: DSV2_LOAD_CKPT (default /tmp/dsv2-v2lite-4l), DSV2_EP_PORT (default 50171).
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

ckpt="${DSV2_LOAD_CKPT:-/tmp/dsv2-v2lite-4l}"
port="${DSV2_EP_PORT:-50171}"
out=bench/out
mkdir -p "$out"
for bin in dsv2-coordinator dsv2-worker dsv2-make-checkpoint dsv2-cli load_generator; do
  [ -x "build/bin/$bin" ] || { echo "run_ep_bench: build/bin/$bin missing; run scripts/build.sh" >&2; exit 1; }
done
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
  echo "run_ep_bench: writing the 4-layer V2-Lite-shaped checkpoint to $ckpt (~4.5 GB)" >&2
  build/bin/dsv2-make-checkpoint --preset v2-lite --layers 4 --out "$ckpt"
fi

pids=()
stop_all() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

wait_healthy() {
  local start=$SECONDS
  until build/bin/dsv2-cli --server "127.0.0.1:$port" --timeout 2 health >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge 300 ]; then
      echo "run_ep_bench: the server did not become healthy; see $out/ep_*.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

load() {  # $1: label
  build/bin/load_generator --server "127.0.0.1:$port" --concurrency 1,8,32 --prompt-len 16 \
    --max-new-tokens 16 --requests 4,16,32 --warmup 1 --json "$out/ep_$1.json" "${@:2}"
}

echo "## standalone" 
build/bin/dsv2-coordinator --model "$ckpt" --host 127.0.0.1 --port "$port" >"$out/ep_standalone.log" 2>&1 &
pids+=($!)
wait_healthy
load standalone "$@"
stop_all

for mb in 1 2; do
  echo
  echo "## coordinator + 2 workers (TCP on loopback), --micro-batches $mb"
  for r in 1 2; do
    build/bin/dsv2-worker --model "$ckpt" --rank "$r" --host 127.0.0.1 --port $((port + 10 + r)) \
      --data-port $((port + 20 + r)) --threads 1 >"$out/ep_worker$r.log" 2>&1 &
    pids+=($!)
  done
  build/bin/dsv2-coordinator --model "$ckpt" --host 127.0.0.1 --port "$port" --micro-batches "$mb" \
    --workers "127.0.0.1:$((port + 11)),127.0.0.1:$((port + 12))" >"$out/ep_coordinator.log" 2>&1 &
  pids+=($!)
  wait_healthy
  load "expert_parallel_mb$mb" "$@"
  build/bin/dsv2-cli --server "127.0.0.1:$port" info > "$out/ep_info_mb$mb.txt"
  stop_all
done

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def levels(name):
    return {l["concurrency"]: l for l in json.load(open(f"{out}/ep_{name}.json"))["levels"]}
s, m1, m2 = levels("standalone"), levels("expert_parallel_mb1"), levels("expert_parallel_mb2")
print()
print("| concurrency | standalone output tok/s | EP, 1 micro-batch | ratio | EP, 2 micro-batches | ratio |")
print("|---|---|---|---|---|---|")
for c in sorted(s):
    x, y, z = (d[c]["output_tokens_per_s"] for d in (s, m1, m2))
    print(f"| {c} | {x:.2f} | {y:.2f} | {y / x:.2f} | {z:.2f} | {z / x:.2f} |")
for mb in (1, 2):
    print(f"--micro-batches {mb}:")
    for line in open(f"{out}/ep_info_mb{mb}.txt"):
        if any(k in line for k in ("expert parallel", "expert shards", "data plane", "exchange hidden")):
            print("  " + line.strip())
PY
