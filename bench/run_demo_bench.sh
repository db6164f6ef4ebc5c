#!/usr/bin/env bash
# The server load benchmark on the built-in demo model (trained, assets/demo-model) beside its
# random twin (the same config.json, random weights: dsv2-make-checkpoint --like), in one
# invocation: bench/run_load_bench.sh on each, alternating, ROUNDS times; prints the median
# output tokens/s per concurrency level side by side. Same shapes, so any difference comes from
# what the weights do (a trained router's skewed expert load vs a random router's even one).
#   bench/run_demo_bench.sh [ROUNDS]        # default 3
# Environment: DSV2_LOAD_SERVER_ARGS (extra dsv2-coordinator flags, e.g. "--threads 2").
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
rounds="${1:-3}"
out=bench/out
mkdir -p "$out"
twin=/tmp/dsv2-demo-random-twin
if [ ! -f "$twin/model.safetensors.index.json" ]; then
  build/bin/dsv2-make-checkpoint --like assets/demo-model --shards 1 --out "$twin" 2>/dev/null
  cp assets/demo-model/tokenizer.json assets/demo-model/tokenizer_config.json "$twin/"
fi
for r in $(seq 1 "$rounds"); do
  for which in trained random; do
    ckpt=assets/demo-model
    [ "$which" = random ] && ckpt="$twin"
    echo "run_demo_bench: round $r/$rounds, $which ($ckpt)" >&2
    DSV2_LOAD_CKPT="$ckpt" bench/run_load_bench.sh --json "$out/demo_${which}_$r.json" >/dev/null
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
runs = {w: [json.load(open(f"{out}/demo_{w}_{r}.json")) for r in range(1, rounds + 1)] for w in ("trained", "random")}
def med(w, c, key, sub=None):
    vals = [l[key] if sub is None else l[key][sub] for d in runs[w] for l in d["levels"] if l["concurrency"] == c]
    return statistics.median(vals)
levels = sorted({l["concurrency"] for l in runs["trained"][0]["levels"]})
print(f"Median of {rounds} rounds (alternating), prompt 64 / output 32 tokens, greedy, ignore_eos.")
print()
print("| concurrency | trained demo model tok/s | random twin tok/s | trained / random | TTFT p50 trained / random (ms) |")
print("|---|---|---|---|---|")
for c in levels:
    a, b = med("trained", c, "output_tokens_per_s"), med("random", c, "output_tokens_per_s")
    ta, tb = med("trained", c, "ttft_ms", "p50"), med("random", c, "ttft_ms", "p50")
    print(f"| {c} | {a:.1f} | {b:.1f} | {a / b:.2f} | {ta:.1f} / {tb:.1f} |")
PY
