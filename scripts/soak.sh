#!/usr/bin/env bash
# The soak: dsv2-coordinator + 2 dsv2-worker processes (the built-in demo model, TCP on
# loopback) under mixed traffic for the given minutes (default 10): random prompt lengths,
# greedy and sampled requests, stop strings, cancellations, deadlines and malformed requests
# (build/bin/dsv2-soak-driver), with a worker SIGKILLed and restarted every few minutes (every
# 3 minutes; once, at 40% of the time, in runs of 3 minutes or less) and never in the last
# quarter. At the end (the driver's checks): every stream ended with a documented status, all
# cache pages are back, the coordinator's file descriptors and threads did not grow past their
# values after warm-up, its resident memory is within 10% of that value, a fixed greedy probe
# gives the same tokens as at the start; and the coordinator drains and exits 0 on SIGTERM.
#   scripts/soak.sh [minutes]          # the suite runs `scripts/soak.sh 2` (ctest Soak2Min)
# Logs and the report go to $DSV2_SOAK_OUT (default soak-out/). DSV2_BIN_DIR (default
# build/bin) names the programs; DSV2_SOAK_STREAMS (default 8) the concurrent client streams.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
minutes="${1:-10}"
bin="$(cd "${DSV2_BIN_DIR:-build/bin}" && pwd)"
out="${DSV2_SOAK_OUT:-soak-out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
model="$(pwd)/assets/demo-model"
t0=$SECONDS
say() { printf '[soak %4ds] %s\n' "$((SECONDS - t0))" "$*"; }
for b in dsv2-coordinator dsv2-worker dsv2-soak-driver; do
  [ -x "$bin/$b" ] || { say "FAILED: $bin/$b is not built (scripts/build.sh)"; exit 1; }
done
seconds=$(python3 -c "print(int(float('$minutes') * 60))")
read -r port w1_port w1_data w2_port w2_data < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

declare -A pid=()
cleanup() {
  local code=$?
  for p in "${pid[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit "$code"
}
trap cleanup EXIT

start_worker() {  # rank control-port data-port
  "$bin/dsv2-worker" --model "$model" --rank "$1" --host 127.0.0.1 --port "$2" --data-port "$3" \
    --threads 1 --device cpu >>"$out/worker$1.log" 2>&1 &
  pid[w$1]=$!
}
start_worker 1 "$w1_port" "$w1_data"
start_worker 2 "$w2_port" "$w2_data"
"$bin/dsv2-coordinator" --model "$model" --device cpu --host 127.0.0.1 --port "$port" \
  --http-port 0 --max-context 1024 --max-running 16 --queue-capacity 64 --threads 1 \
  --workers "127.0.0.1:$w1_port,127.0.0.1:$w2_port" --worker-timeout 3 \
  >"$out/coordinator.log" 2>&1 &
pid[coordinator]=$!
say "coordinator (pid ${pid[coordinator]}) on :$port, workers on :$w1_port and :$w2_port;" \
  "traffic for ${seconds} s"

"$bin/dsv2-soak-driver" --server "127.0.0.1:$port" --pid "${pid[coordinator]}" \
  --seconds "$seconds" --streams "${DSV2_SOAK_STREAMS:-8}" >"$out/report.md" 2>"$out/driver.log" &
driver=$!

# Worker restarts: every 3 minutes (once at 40% in short runs), none in the last quarter.
if [ "$seconds" -le 180 ]; then kills=($((seconds * 2 / 5))); else
  kills=(); for ((t = 180; t <= seconds * 3 / 4; t += 180)); do kills+=("$t"); done
fi
started=$SECONDS
rank=2
for at in "${kills[@]}"; do
  while [ $((SECONDS - started)) -lt "$at" ]; do
    kill -0 "$driver" 2>/dev/null || break 2
    sleep 1
  done
  say "SIGKILL worker $rank (pid ${pid[w$rank]})"
  kill -KILL "${pid[w$rank]}" 2>/dev/null || true
  wait "${pid[w$rank]}" 2>/dev/null || true
  sleep 3
  if [ "$rank" = 1 ]; then start_worker 1 "$w1_port" "$w1_data"; else start_worker 2 "$w2_port" "$w2_data"; fi
  say "worker $rank restarted (pid ${pid[w$rank]})"
  rank=$((3 - rank))
done

driver_rc=0
wait "$driver" || driver_rc=$?
cat "$out/report.md"
kill -TERM "${pid[coordinator]}"
coordinator_rc=0
wait "${pid[coordinator]}" || coordinator_rc=$?
unset 'pid[coordinator]'
if [ "$coordinator_rc" != 0 ]; then
  say "FAILED: the coordinator exited $coordinator_rc on SIGTERM (see $out/coordinator.log)"
  exit 1
fi
if [ "$driver_rc" != 0 ]; then
  say "FAILED (report above; logs in $out)"
  exit 1
fi
say "PASSED: coordinator drained and exited 0; report in $out/report.md"
