#!/usr/bin/env bash
# Server load benchmark: writes (if missing) the 4-layer V2-Lite-shaped checkpoint (random
# weights, ~4.5 GB), starts dsv2-coordinator on it, runs bench/load_generator at concurrency
# 1, 8 and 32, stops the server. Prints a markdown table; JSON goes to bench/out/.
#   bench/run_load_bench.sh                      # defaults below
#   bench/run_load_bench.sh --requests 8,16,32 --max-new-tokens 64  # extra args: load_generator
#   DSV2_LOAD_COMPARE_HTTP=1 bench/run_load_bench.sh   # gRPC and the OpenAI HTTP API side by
#                                   # side, level by level in one run (same server, same prompts)
# Environment: DSV2_LOAD_CKPT (a checkpoint dir to serve as it is; default: the 4-layer one at
# /tmp/dsv2-v2lite-4l, written when missing), DSV2_LOAD_PORT
# (default 50151), DSV2_LOAD_SERVER_ARGS (extra dsv2-coordinator flags, e.g. "--threads 2").
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

ckpt="${DSV2_LOAD_CKPT:-/tmp/dsv2-v2lite-4l}"
port="${DSV2_LOAD_PORT:-50151}"
out_dir=bench/out
mkdir -p "$out_dir"
json="$out_dir/load_bench.json"
log="$out_dir/load_bench_server.log"

for bin in dsv2-coordinator dsv2-make-checkpoint dsv2-cli load_generator; do
  if [ ! -x "build/bin/$bin" ]; then
    echo "run_load_bench: build/bin/$bin missing; run scripts/build.sh" >&2
    exit 1
  fi
done

if [ -n "${DSV2_LOAD_CKPT:-}" ]; then
  # A checkpoint named explicitly is served as it is, never written over.
  [ -f "$ckpt/config.json" ] || { echo "run_load_bench: $ckpt/config.json not found" >&2; exit 1; }
elif [ ! -f "$ckpt/config.json" ] || [ ! -f "$ckpt/model.safetensors.index.json" ]; then
  echo "run_load_bench: writing the 4-layer V2-Lite-shaped checkpoint to $ckpt (~4.5 GB)" >&2
  build/bin/dsv2-make-checkpoint --preset v2-lite --layers 4 --out "$ckpt"
fi

cli=(build/bin/dsv2-cli --server "127.0.0.1:$port" --timeout 2)
if "${cli[@]}" health >/dev/null 2>&1; then
  echo "run_load_bench: something already serves on port $port (set DSV2_LOAD_PORT)" >&2
  exit 1
fi
# shellcheck disable=SC2086  # DSV2_LOAD_SERVER_ARGS is a list of flags
http_port=$((port + 1))
build/bin/dsv2-coordinator --model "$ckpt" --host 127.0.0.1 --port "$port" \
  --http-port "$http_port" --served-model-name bench ${DSV2_LOAD_SERVER_ARGS:-} >"$log" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT TERM

start=$SECONDS
until "${cli[@]}" health >/dev/null 2>&1; do
  if ! kill -0 "$server_pid" 2>/dev/null || [ $((SECONDS - start)) -ge 300 ]; then
    echo "run_load_bench: dsv2-coordinator did not become healthy; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "run_load_bench: serving $ckpt on 127.0.0.1:$port" >&2

if [ "${DSV2_LOAD_COMPARE_HTTP:-0}" != 1 ]; then
  build/bin/load_generator --server "127.0.0.1:$port" --concurrency 1,8,32 --prompt-len 64 \
    --max-new-tokens 32 --requests 12,32,64 --warmup 2 --json "$json" "$@"
  echo "run_load_bench: JSON in $json, server log in $log" >&2
  exit 0
fi
# gRPC and HTTP alternately at each level, the same seeds (the same prompts).
for level in "1 12" "8 32" "32 64"; do
  read -r c n <<<"$level"
  for api in grpc http; do
    extra=()
    [ "$api" = http ] && extra=(--http "127.0.0.1:$http_port" --model-name bench)
    build/bin/load_generator --server "127.0.0.1:$port" --concurrency "$c" --requests "$n" \
      --prompt-len 64 --max-new-tokens 32 --warmup 2 "${extra[@]}" \
      --json "$out_dir/load_${api}_$c.json" "$@" >/dev/null
  done
done
python3 - "$out_dir" <<'PY'
import json, sys
d = sys.argv[1]
print("| streams | gRPC out tok/s | HTTP out tok/s | HTTP / gRPC | TTFT p50 gRPC / HTTP (ms) | ITL p50 gRPC / HTTP (ms) | errors |")
print("|---|---|---|---|---|---|---|")
for c in (1, 8, 32):
    g, h = (json.load(open(f"{d}/load_{a}_{c}.json"))["levels"][0] for a in ("grpc", "http"))
    print(f"| {c} | {g['output_tokens_per_s']:.1f} | {h['output_tokens_per_s']:.1f} | "
          f"{h['output_tokens_per_s'] / g['output_tokens_per_s']:.3f} | "
          f"{g['ttft_ms']['p50']:.0f} / {h['ttft_ms']['p50']:.0f} | "
          f"{g['itl_ms']['p50']:.1f} / {h['itl_ms']['p50']:.1f} | {g['errors']} / {h['errors']} |")
PY
echo "run_load_bench: JSON in $out_dir/load_{grpc,http}_*.json, server log in $log" >&2
