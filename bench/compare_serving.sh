#!/usr/bin/env bash
# Serving workloads side by side: dsv2-coordinator (prefix caching on, and off) and llama.cpp's
# llama-server on the same weights, through their OpenAI-compatible APIs, driven by a load tester
# nobody here wrote: NVIDIA's aiperf from PyPI (its synthetic prompts tokenized with the
# checkpoint's own tokenizer, read from disk: nothing is downloaded at run time).
#   bench/compare_serving.sh [--layers 4] [--threads 2] [--out bench/out/serving] [--quick]
#                            [--rounds 1] [--workloads random-c1,...] [--servers dsv2,...]
#                            [--no-example] [--no-docs]
# 1. builds llama.cpp (with llama-server) as bench/compare_llamacpp.sh does, and writes the same
#    random V2-Lite-shaped bf16 checkpoint (DeepSeek-V3 tokenizer) and its bf16 GGUF;
# 2. the example of issue 32, on each server freshly started (llama-server with one slot): a
#    905-token prompt, then one sharing its first 900 tokens, one at a time (3 pairs, medians);
# 3. the workloads, each on a freshly started server, the servers' order alternating from one
#    workload to the next (chat completions, streamed, ignore_eos so every answer is full length):
#      random-cN    prompts of 256 tokens, 64 out, at 1, 8 and 32 concurrent streams
#                   (8, 32 and 64 requests);
#      shared-cN    SGLang's generated-shared-prefix shape scaled down: 8 system prompts of 1,024
#                   tokens, each request one of them (drawn at random by aiperf) + a 64-token
#                   question, 64 out; 64 requests at 8 and at 32 streams;
#      multiturn-cN N conversations x 4 turns (128-token user turns, 64 out; every turn resends
#                   the conversation so far, answers included) at N = 8 and 32 streams;
# 4. prints the table (output tokens/s, TTFT and ITL p50/p99, prompt tokens served from a cache)
#    and writes OUT/serving.{md,json,png}; docs/BENCHMARKS.md's compare_serving section is
#    regenerated from it (unless --no-docs).
# --rounds N repeats the example and the workloads N times (the servers' order alternating from
# one run to the next) and reports medians; --workloads and --servers (dsv2, dsv2-nocache,
# llamacpp) pick a subset, --no-example skips step 2; docs are written for the full set only.
# llama-server runs with --parallel equal to the streams (a slot each) and its defaults
# otherwise (prompt caching on); ours with its defaults. Both get --threads; aiperf shares the
# machine with them. --quick: a few requests per workload (checks that everything runs).
# Needs what bench/compare_llamacpp.sh needs (~20 GB of disk, ~16 GB of memory) and ~45 minutes
# on 2 cores.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

layers=4 threads=2 out=bench/out/serving docs=1 quick=0 rounds=1 example=1
all_workloads="random-c1,random-c8,random-c32,shared-c8,shared-c32,multiturn-c8,multiturn-c32"
all_servers="dsv2,dsv2-nocache,llamacpp"
want_workloads="$all_workloads" want_servers="$all_servers"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --workloads) want_workloads="$2"; shift 2 ;;
    --servers) want_servers="$2"; shift 2 ;;
    --no-example) example=0; shift ;;
    --layers) layers="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-docs) docs=0; shift ;;
    *) echo "compare_serving: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for w in ${want_workloads//,/ }; do
  [[ ",$all_workloads," == *",$w,"* ]] || { echo "compare_serving: unknown workload '$w' (of $all_workloads)" >&2; exit 2; }
done
for s in ${want_servers//,/ }; do
  [[ ",$all_servers," == *",$s,"* ]] || { echo "compare_serving: unknown server '$s' (of $all_servers)" >&2; exit 2; }
done
for v in threads layers rounds; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "compare_serving: --$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
say() { echo "compare_serving: $*" >&2; }
cache="$root/bench/out/llamacpp"
mkdir -p "$out" "$cache"
out="$(cd "$out" && pwd)"

cpu_model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
say "CPU: $cpu_model, $(nproc) cores; $threads threads per server"

# --- builds, environments, weights -----------------------------------------------------------
[ -x build/bin/dsv2-coordinator ] && [ -x build/bin/dsv2-make-checkpoint ] ||
  { say "building dsv2 (scripts/build.sh)"; scripts/build.sh >/dev/null; }
# shellcheck source=tools/pinned_venv.sh
source tools/pinned_venv.sh
pinned_venv requirements-fixtures.txt requirements-llamacpp.txt
# shellcheck source=bench/llamacpp_setup.sh
source bench/llamacpp_setup.sh
llamacpp_setup "$cache"
llamacpp_bf16_pair "$layers" "$cache"
ckpt="$pair_ckpt" gguf="$pair_gguf"
llama_server="$llamacpp_build/bin/llama-server"
# aiperf in an environment of its own (its pins differ from the reference tools').
loadtest_venv="$root/tools/.venv-loadtest"
if [ ! -x "$loadtest_venv/bin/aiperf" ]; then
  say "installing aiperf into tools/.venv-loadtest"
  "${PYTHON:-python3}" -m venv "$loadtest_venv"
  "$loadtest_venv/bin/pip" install --quiet --upgrade pip
fi
"$loadtest_venv/bin/pip" install --quiet -r tools/requirements-loadtest.txt
aiperf="$loadtest_venv/bin/aiperf"

# --- servers ---------------------------------------------------------------------------------
port=21400  # below the ephemeral range, where a client connection may hold a port
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  [ -n "$server_pid" ] && { wait "$server_pid" 2>/dev/null || true; }
  server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server NAME SLOTS LOG: dsv2 | dsv2-nocache | llamacpp on 127.0.0.1:$port, waits until
# it answers a chat completion (which also warms it up).
start_server() {
  local name="$1" slots="$2" log="$3"
  port=$((port + 2))
  case "$name" in
    dsv2 | dsv2-nocache)
      local caching=true
      [ "$name" = dsv2-nocache ] && caching=false
      build/bin/dsv2-coordinator --model "$ckpt" --host 127.0.0.1 --port $((port + 1)) \
        --http-port "$port" --served-model-name v2lite --threads "$threads" \
        --prefix-caching="$caching" >"$log" 2>&1 &
      ;;
    llamacpp)
      # A slot per stream, each with room for the longest conversation.
      "$llama_server" -m "$gguf" --host 127.0.0.1 --port "$port" -t "$threads" -tb "$threads" \
        -np "$slots" -c $((slots * 4096)) --alias v2lite >"$log" 2>&1 &
      ;;
  esac
  server_pid=$!
  local body='{"model": "v2lite", "messages": [{"role": "user", "content": "Warm up."}], "max_tokens": 4}'
  for _ in $(seq 1 300); do
    if curl -sf -m 30 "http://127.0.0.1:$port/v1/chat/completions" \
      -H 'Content-Type: application/json' -d "$body" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { tail -5 "$log" >&2; say "$name did not start"; exit 1; }
    sleep 1
  done
  say "$name did not answer within 300 s"; exit 1
}

IFS=',' read -r -a servers <<<"$want_servers"
rm -rf "$out/runs" && mkdir -p "$out/runs"
turn=0  # alternates the servers' order from one run to the next
next_order() {  # sets $order
  local s
  order=()
  if [ $((turn % 2)) = 0 ]; then order=("${servers[@]}"); else
    for ((s = ${#servers[@]} - 1; s >= 0; s--)); do order+=("${servers[$s]}"); done
  fi
  turn=$((turn + 1))
}

for round in $(seq 1 "$rounds"); do
# --- 2. the example: one prompt, then one sharing its first 900 tokens ------------------------
pairs=3
[ "$quick" = 1 ] && pairs=1
if [ "$example" = 1 ]; then
  next_order
  for name in "${order[@]}"; do
    say "round $round/$rounds: example (905 then 900 shared tokens, $pairs pairs): $name"
    dir="$out/runs/$round/example/$name"
    mkdir -p "$dir"
    start_server "$name" 1 "$dir/server.log"
    "$venv_python" bench/serving_prefix_example.py "http://127.0.0.1:$port" v2lite \
      --pairs "$pairs" --seed "$round" >"$dir/example.json"
    stop_server
  done
fi

# --- 3. the workloads -------------------------------------------------------------------------
# name | streams | aiperf arguments (full run) | aiperf arguments (--quick)
workloads=(
  "random-c1|1|--isl 256 --osl 64 --request-count 8|--isl 256 --osl 16 --request-count 2"
  "random-c8|8|--isl 256 --osl 64 --request-count 32|--isl 256 --osl 16 --request-count 8"
  "random-c32|32|--isl 256 --osl 64 --request-count 64|--isl 256 --osl 16 --request-count 32"
  "shared-c8|8|--num-prefix-prompts 8 --prefix-prompt-length 1024 --isl 64 --osl 64 --request-count 64|--num-prefix-prompts 2 --prefix-prompt-length 1024 --isl 64 --osl 16 --request-count 8"
  "shared-c32|32|--num-prefix-prompts 8 --prefix-prompt-length 1024 --isl 64 --osl 64 --request-count 64|--num-prefix-prompts 2 --prefix-prompt-length 1024 --isl 64 --osl 16 --request-count 32"
  "multiturn-c8|8|--conversation-num 8 --conversation-turn-mean 4 --conversation-turn-stddev 0 --isl 128 --osl 64|--conversation-num 2 --conversation-turn-mean 2 --conversation-turn-stddev 0 --isl 256 --osl 16"
  "multiturn-c32|32|--conversation-num 32 --conversation-turn-mean 4 --conversation-turn-stddev 0 --isl 128 --osl 64|--conversation-num 4 --conversation-turn-mean 2 --conversation-turn-stddev 0 --isl 256 --osl 16"
)
for w in "${workloads[@]}"; do
  IFS='|' read -r wname streams full_args quick_args <<<"$w"
  [[ ",$want_workloads," == *",$wname,"* ]] || continue
  args="$full_args"
  [ "$quick" = 1 ] && args="$quick_args"
  next_order
  for name in "${order[@]}"; do
    say "round $round/$rounds: $wname: $name"
    dir="$out/runs/$round/$wname/$name"
    mkdir -p "$dir"
    start_server "$name" "$streams" "$dir/server.log"
    # shellcheck disable=SC2086  # $args is a list of aiperf flags
    "$aiperf" profile --model v2lite --url "http://127.0.0.1:$port" --endpoint-type chat \
      --streaming --tokenizer "$ckpt" --concurrency "$streams" $args --isl-stddev 0 \
      --osl-stddev 0 --extra-inputs ignore_eos:true --use-server-token-count --random-seed 7 \
      --ui-type none --no-server-metrics --no-gpu-telemetry --workers-max 1 \
      --record-processors 1 --artifact-dir "$dir" >"$dir/aiperf.log" 2>&1 ||
      { tail -20 "$dir/aiperf.log" >&2; say "aiperf failed on $wname/$name"; exit 1; }
    stop_server
  done
done
done  # rounds

# --- 4. the report ----------------------------------------------------------------------------
llama_version="$(find "$llamacpp_build/bin" -name 'libggml.so.*.*.*' | sed 's/.*libggml\.so\.//' | head -1)"
report_args=(--out "$out" --rounds "$rounds" --cpu "$cpu_model, $(nproc) cores" --threads "$threads" --layers "$layers"
  --llamacpp "llama-cpp-python $llamacpp_py_version (ggml $llama_version)"
  --aiperf "$("$loadtest_venv/bin/pip" show aiperf | sed -n 's/^Version: //p')")
[ "$quick" = 1 ] && report_args+=(--quick)
if [ "$docs" = 1 ] && [ "$quick" = 0 ] && [ "$example" = 1 ] && [ "$want_workloads" = "$all_workloads" ] &&
  [ "$want_servers" = "$all_servers" ]; then
  report_args+=(--docs docs/BENCHMARKS.md)
fi
"$loadtest_venv/bin/python" bench/compare_serving_report.py "${report_args[@]}"
