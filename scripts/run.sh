#!/usr/bin/env bash
# The README's run command: installs what is missing, builds if needed, starts the gRPC server,
# waits until it is healthy, streams one completion through dsv2-cli, then keeps serving in the
# foreground until Ctrl-C.
#   scripts/run.sh                              # the built-in demo model (a small V2 trained
#                                               # on Shakespeare: it writes Shakespeare-like text)
#   scripts/run.sh --model DIR                  # a DeepSeek-V2-family checkpoint
#   scripts/run.sh --port 50052 --http-port 8001 --prompt "Once upon a time" --max-new-tokens 64
#   scripts/run.sh --model DIR --prompt-ids 100000,1234,42   # token ids (no tokenizer.json)
# Other arguments go to dsv2-coordinator (e.g. --threads 8; see build/bin/dsv2-coordinator
# --helpfull). DSV2_RUN_HEALTH_TIMEOUT (seconds, default 120) bounds the wait for health.
set -euo pipefail
cd "$(dirname "$0")/.."

model=""
port=50051
http_port=8000
host=""
prompt=$'ROMEO.\nBut soft, what light through yonder window breaks?\n'
prompt_ids=""
max_new=64
server_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --model=*) model="${1#*=}"; shift ;;
    --port) port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --http-port) http_port="$2"; shift 2 ;;
    --http-port=*) http_port="${1#*=}"; shift ;;
    --host) host="$2"; shift 2 ;;
    --host=*) host="${1#*=}"; shift ;;
    --prompt) prompt="$2"; shift 2 ;;
    --prompt-ids) prompt_ids="$2"; shift 2 ;;
    --max-new-tokens) max_new="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) server_args+=("$1"); shift ;;
  esac
done

say() { echo "run.sh: $*" >&2; }

scripts/install-deps.sh
if [ ! -x build/bin/dsv2-coordinator ] || [ ! -x build/bin/dsv2-cli ]; then
  scripts/build.sh
else
  # Already built: bring the two programs up to date (quick when nothing changed).
  mkdir -p build/logs
  if ! cmake --build build -j "$(nproc)" --target dsv2-coordinator dsv2-cli \
      >build/logs/run-build.log 2>&1; then
    tail -n 30 build/logs/run-build.log >&2
    say "the build failed (full log: build/logs/run-build.log)"
    exit 1
  fi
fi

cli_host="$host"
case "$cli_host" in ""|0.0.0.0|"[::]"|::) cli_host=127.0.0.1 ;; esac
cli=(build/bin/dsv2-cli --server "$cli_host:$port")

# Someone already answering on the port would pass our health check in the server's stead.
set +e
"${cli[@]}" --timeout 2 health >/dev/null 2>&1
probe=$?
set -e
if [ "$probe" -ne 2 ]; then
  say "a gRPC server already answers on port $port; stop it or pick another with --port N"
  exit 1
fi

args=(--port "$port" --http-port "$http_port")
[ -n "$host" ] && args+=(--host "$host")
if [ -n "$model" ]; then
  args+=(--model "$model")
  what="$model"
else
  what="the built-in demo model (a small DeepSeek-V2 trained on Shakespeare's plays)"
fi
mkdir -p build/logs
log="build/logs/dsv2-coordinator.log"
say "starting dsv2-coordinator on port $port with $what (log: $log)"
build/bin/dsv2-coordinator "${args[@]}" "${server_args[@]}" >"$log" 2>&1 &
server_pid=$!

server_code=""  # set once the server has been waited for
reap_server() {
  [ -n "$server_code" ] && return
  server_code=0
  wait "$server_pid" 2>/dev/null || server_code=$?
}
stop_server() {
  [ -n "$server_code" ] && return
  if kill -0 "$server_pid" 2>/dev/null; then
    say "stopping dsv2-coordinator (pid $server_pid)"
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do  # up to 10 s, then SIGKILL
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      say "dsv2-coordinator did not stop within 10 s; killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  reap_server
  say "dsv2-coordinator stopped (exit code $server_code)"
}
server_died() {
  reap_server
  say "dsv2-coordinator exited (code $server_code)$1; last lines of $log:"
  tail -n 30 "$log" | sed 's/^/    /' >&2
  exit 1
}
trap stop_server EXIT
trap 'echo >&2; exit 130' INT TERM

timeout_s="${DSV2_RUN_HEALTH_TIMEOUT:-120}"
start=$SECONDS
until "${cli[@]}" --timeout 2 health >/dev/null 2>&1; do
  kill -0 "$server_pid" 2>/dev/null || server_died " before it became healthy"
  if [ $((SECONDS - start)) -ge "$timeout_s" ]; then
    say "dsv2-coordinator is not healthy after ${timeout_s} s; last lines of $log:"
    tail -n 30 "$log" | sed 's/^/    /' >&2
    exit 1
  fi
  sleep 0.5
done
kill -0 "$server_pid" 2>/dev/null || server_died " although the port answered"
say "dsv2-coordinator is SERVING on $cli_host:$port ($((SECONDS - start)) s)"
"${cli[@]}" info | sed 's/^/    /' >&2

gen=("${cli[@]}" generate --max-new-tokens "$max_new")
# The demo model writes best a little below temperature 1 (seeded: the same text each run).
[ -z "$model" ] && gen+=(--temperature 0.8 --top-p 0.95 --seed 1)
try='generate "Hello" --max-new-tokens 16'
[ -z "$model" ] && try='generate "To be, or not to be," --max-new-tokens 48 --temperature 0.8'
if [ -n "$prompt_ids" ]; then
  gen+=(--token-ids "$prompt_ids")
  shown="token ids $prompt_ids"
  try="generate --token-ids $prompt_ids --max-new-tokens 16"
elif "${cli[@]}" info | grep -q '^tokenizer: *no'; then
  say "the checkpoint has no tokenizer.json: using token ids 0,1,2 as the prompt"
  gen+=(--token-ids "0,1,2")
  shown="token ids 0,1,2"
  try='generate --token-ids 0,1,2 --max-new-tokens 16'
else
  gen+=("$prompt")
  shown="\"$prompt\""
fi
say "streaming a completion of $shown ($max_new tokens at most):"
echo "----" >&2
"${gen[@]}" || { say "the completion failed (see above)"; exit 1; }
echo "----" >&2

say "serving gRPC on $cli_host:$port and HTTP on $cli_host:$http_port (pid $server_pid); Ctrl-C stops it. Try:"
say "  build/bin/dsv2-cli --server $cli_host:$port $try"
model_id=""
if command -v curl >/dev/null; then
  model_id=$(curl -s "http://$cli_host:$http_port/v1/models" 2>/dev/null |
    sed -n 's/.*"id":"\([^"]*\)".*/\1/p' || true)
fi
say "  curl http://$cli_host:$http_port/v1/chat/completions -H 'Content-Type: application/json' \\"
say "    -d '{\"model\": \"${model_id:-MODEL}\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 16}'"
say "  python: openai.OpenAI(base_url=\"http://$cli_host:$http_port/v1\", api_key=\"-\")"
wait "$server_pid" || true
kill -0 "$server_pid" 2>/dev/null || server_died ""
