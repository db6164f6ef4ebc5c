#!/usr/bin/env bash
# A long prompt end to end (issue 31, part 4): dsv2-coordinator with its default --max-context
# (the model's own limit bounded by memory) on the 4-layer V2-Lite-shaped checkpoint of
# bench/compare_llamacpp.sh; one request of --prompt-len random token ids and 8 new tokens
# through gRPC, then one through the OpenAI-compatible HTTP API (load_generator --http); then a
# prompt longer than the server's max context, which must fail with INVALID_ARGUMENT naming the
# limit. Prints the start-up cache line and each request's time to first token and total.
#   bench/run_long_context.sh [--prompt-len 32000] [--max-batch-tokens 2048] [--model DIR]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
prompt_len=32000 step=2048 model=bench/out/v2lite-4l-v3vocab port=50371 http=8371
while [ $# -gt 0 ]; do
  case "$1" in
    --prompt-len) prompt_len="$2"; shift 2 ;;
    --max-batch-tokens) step="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    *) echo "run_long_context: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -e "$model" ] || { echo "run_long_context: $model missing (bench/compare_llamacpp.sh writes it)" >&2; exit 1; }
out=bench/out/long-context
mkdir -p "$out"
build/bin/dsv2-coordinator --model "$model" --host 127.0.0.1 --port "$port" --http-port "$http" \
  --max-batch-tokens "$step" >"$out/coordinator.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
until build/bin/dsv2-cli --server "127.0.0.1:$port" --timeout 2 health >/dev/null 2>&1; do
  kill -0 $pid 2>/dev/null || { tail -5 "$out/coordinator.log" >&2; exit 1; }
  sleep 1
done
grep "latent KV cache" "$out/coordinator.log"
limit="$(build/bin/dsv2-cli --server "127.0.0.1:$port" info | sed -n 's/.*max context[^0-9]*\([0-9]*\).*/\1/p')"
echo "max context: $limit tokens"
for api in grpc http; do
  flags=()
  [ "$api" = http ] && flags=(--http "127.0.0.1:$http" --model-name "$(basename "$model")")
  build/bin/load_generator --server "127.0.0.1:$port" "${flags[@]}" --concurrency 1 --requests 1 \
    --warmup 0 --prompt-len "$prompt_len" --max-new-tokens 8 --json "$out/$api.json" >/dev/null
  python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))["levels"][0]
print(f"{sys.argv[2]}: prompt {sys.argv[3]} tokens + 8 new: time to first token {l['"'"'ttft_ms'"'"']['"'"'p50'"'"'] / 1000:.1f} s, "
      f"whole request {l['"'"'latency_ms'"'"']['"'"'p50'"'"'] / 1000:.1f} s, errors {l['"'"'errors'"'"']}")
' "$out/$api.json" "$api" "$prompt_len"
done
too_long=$((limit + 1))
build/bin/load_generator --server "127.0.0.1:$port" --concurrency 1 --requests 1 --warmup 0 \
  --prompt-len "$too_long" --max-new-tokens 1 >"$out/too-long.log" 2>&1 || true
refusal="$(grep -o 'first: 3: .*' "$out/too-long.log" || true)"  # 3: INVALID_ARGUMENT
[ -n "$refusal" ] || { echo "run_long_context: a $too_long-token prompt was not refused with INVALID_ARGUMENT" >&2; exit 1; }
echo "a $too_long-token prompt: INVALID_ARGUMENT, ${refusal#first: 3: }"
