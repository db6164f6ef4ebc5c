#!/usr/bin/env bash
# The real V2-Lite shape on one ordinary machine (issue 30, part 6): a 27-layer V2-Lite-shaped
# GGUF (random weights; the DeepSeek-V3 tokenizer's 129,280 rows, as bench/compare_llamacpp.sh)
# in Q4_K_M or Q8_0, served
#   1. by dsv2-coordinator alone (every expert in process),
#   2. by dsv2-coordinator --workers with two dsv2-worker processes, each holding half of the
#      routed experts (TCP on loopback; all three share this machine's cores),
# and run by llama.cpp's llama-bench on the same file (llama.cpp of bench/llamacpp_setup.sh,
# when it is built: bench/compare_llamacpp.sh builds it).
# Through the server, the same load for 1 and 2 (bench/load_generator, greedy, ignore_eos):
# decode of one sequence (1000 / the median inter-token latency; 16-token prompts, 32 new
# tokens), of 8 at once (output tokens/s), and a 512-token prompt's prefill (512 / the median
# time to first token; --max-batch-tokens 512, one step). Per process: peak and final RSS
# (VmHWM, VmRSS; the file's pages are shared between processes through the page cache).
#   bench/run_full_shape.sh [--type q4_k_m|q8_0] [--threads 2] [--keep-checkpoint]
# Makes once, in bench/out/full/: the bf16 checkpoint (dsv2-make-checkpoint, 31.6 GB of disk,
# deleted after the GGUF is written unless --keep-checkpoint) and the GGUF (dsv2-quantize,
# 10.7 GB in Q4_K_M, 17.0 GB in Q8_0). Prints a table and writes bench/out/full/<type>.md.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
type=q4_k_m threads=2 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --type) type="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --keep-checkpoint) keep=1; shift ;;
    *) echo "run_full_shape: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$type" == q4_k_m || "$type" == q8_0 ]] ||
  { echo "run_full_shape: --type must be q4_k_m or q8_0, got '$type'" >&2; exit 2; }
[[ "$threads" =~ ^[1-9][0-9]*$ ]] ||
  { echo "run_full_shape: --threads must be a positive integer, got '$threads'" >&2; exit 2; }
say() { echo "run_full_shape: $*" >&2; }
for bin in dsv2-coordinator dsv2-worker dsv2-make-checkpoint dsv2-quantize dsv2-cli load_generator; do
  [ -x "build/bin/$bin" ] || { say "build/bin/$bin missing; run scripts/build.sh"; exit 1; }
done

out=bench/out/full
ckpt="$out/v2lite-27l-v3vocab"
upper="$(echo "$type" | tr a-z A-Z)"
gguf="$out/v2lite-27l-$upper.gguf"
port=50271
mkdir -p "$out"
if [ ! -f "$gguf" ]; then
  if [ ! -f "$ckpt/.complete" ]; then
    say "writing the 27-layer bf16 checkpoint $ckpt (31.6 GB)"
    rm -rf "$ckpt"
    build/bin/dsv2-make-checkpoint --out "$ckpt" --preset v2-lite --vocab-size 129280 --shards 8
    cp ../shared/tokenizers/deepseek-v3/tokenizer.json \
      ../shared/tokenizers/deepseek-v3/tokenizer_config.json "$ckpt/"
    touch "$ckpt/.complete"
  fi
  say "quantizing to $upper with dsv2-quantize"
  build/bin/dsv2-quantize "$ckpt" "$gguf.part" --type "$type" --threads "$threads"
  mv "$gguf.part" "$gguf"
  [ "$keep" = 1 ] || rm -rf "$ckpt"
fi
file_gb="$(awk -v b="$(stat -c %s "$gguf")" 'BEGIN { printf "%.2f", b / 1e9 }')"

pids=() names=()
stop_all() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  pids=() names=()
}
trap stop_all EXIT

wait_healthy() {
  local start=$SECONDS
  until build/bin/dsv2-cli --server "127.0.0.1:$port" --timeout 2 health >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge 900 ]; then say "the server did not become healthy; see $out/*.log"; exit 1; fi
    sleep 1
  done
}

rss_of() {  # pid -> "peak GB / now GB"
  awk '/^VmHWM/ { h = $2 } /^VmRSS/ { r = $2 } END { printf "%.2f / %.2f", h * 1024 / 1e9, r * 1024 / 1e9 }' "/proc/$1/status"
}

load() {  # setup name -> $out/<name>-{decode1,decode8,prefill}.json
  local name="$1"
  build/bin/load_generator --server "127.0.0.1:$port" --concurrency 1 --requests 3 --warmup 1 \
    --prompt-len 16 --max-new-tokens 32 --json "$out/$name-decode1.json" >/dev/null
  build/bin/load_generator --server "127.0.0.1:$port" --concurrency 8 --requests 8 --warmup 0 \
    --prompt-len 16 --max-new-tokens 32 --json "$out/$name-decode8.json" >/dev/null
  build/bin/load_generator --server "127.0.0.1:$port" --concurrency 1 --requests 3 --warmup 0 \
    --prompt-len 512 --max-new-tokens 1 --json "$out/$name-prefill.json" >/dev/null
}

declare -A rss
serve() {  # name, then the coordinator's extra flags
  local name="$1" start=$SECONDS
  shift
  build/bin/dsv2-coordinator --model "$gguf" --host 127.0.0.1 --port "$port" --http-port 0 \
    --threads "$threads" --max-batch-tokens 512 "$@" >"$out/$name-coordinator.log" 2>&1 &
  pids+=($!) names+=(coordinator)
  wait_healthy
  say "$name: healthy after $((SECONDS - start)) s; measuring"
  load "$name"
  for i in "${!pids[@]}"; do rss["$name ${names[$i]}"]="$(rss_of "${pids[$i]}")"; done
  stop_all
}

say "$gguf ($file_gb GB); $(nproc) cores, $threads threads"
serve standalone
for r in 1 2; do
  build/bin/dsv2-worker --model "$gguf" --rank "$r" --host 127.0.0.1 --port $((port + 10 + r)) \
    --data-port $((port + 20 + r)) --threads 1 >"$out/ep-worker$r.log" 2>&1 &
  pids+=($!) names+=("worker $r")
done
serve ep --workers "127.0.0.1:$((port + 11)),127.0.0.1:$((port + 12))"

llama=""
lbin="bench/out/llamacpp/build-0.3.36/bin"
if [ -x "$lbin/llama-bench" ]; then
  say "llama.cpp: llama-bench tg32 and pp512 on the same file"
  /usr/bin/time -v "$lbin/llama-bench" -m "$gguf" -t "$threads" -p 512 -n 32 -r 1 -o json \
    >"$out/llama-bench.json" 2>"$out/llama-bench.log" || { tail -5 "$out/llama-bench.log" >&2; exit 1; }
  llama="$out/llama-bench.json"
else
  say "llama.cpp is not built ($lbin); run bench/compare_llamacpp.sh once to build it"
fi

python3 - "$out" "$type" "$file_gb" "$threads" "$llama" "${rss[standalone coordinator]}" \
  "${rss[ep coordinator]}" "${rss[ep worker 1]}" "${rss[ep worker 2]}" <<'PY'
import json, re, sys
out, qtype, file_gb, threads, llama, rss_s, rss_c, rss_w1, rss_w2 = sys.argv[1:]
def level(name, part):
    return json.load(open(f"{out}/{name}-{part}.json"))["levels"][0]
rows = []
for name, label in (("standalone", "dsv2-coordinator alone"),
                    ("ep", "dsv2-coordinator + 2 workers (TCP, loopback)")):
    d1, d8, pf = level(name, "decode1"), level(name, "decode8"), level(name, "prefill")
    rows.append((label, 1000 / d1["itl_ms"]["p50"], d8["output_tokens_per_s"],
                 512 / (pf["ttft_ms"]["p50"] / 1000)))
lines = [f"| {qtype.upper()} file ({file_gb} GB), {threads} threads | decode, 1 sequence (tok/s) "
         "| decode, 8 sequences (tok/s) | prefill 512 (tok/s) | peak / final RSS (GB) |",
         "|---|---|---|---|---|"]
rss = {"dsv2-coordinator alone": f"{rss_s}",
       "dsv2-coordinator + 2 workers (TCP, loopback)":
           f"coordinator {rss_c}; workers {rss_w1}, {rss_w2}"}
for label, d1, d8, pf in rows:
    lines.append(f"| {label} | {d1:.1f} | {d8:.1f} | {pf:.1f} | {rss[label]} |")
if llama:
    tg = pp = None
    for r in json.load(open(llama)):
        if r.get("n_gen", 0) > 0: tg = r["avg_ts"]
        if r.get("n_prompt", 0) > 0: pp = r["avg_ts"]
    peak = ""
    log = open(f"{out}/llama-bench.log").read()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log)
    if m: peak = f"{int(m.group(1)) * 1024 / 1e9:.2f} (peak)"
    lines.append(f"| llama.cpp llama-bench (tg32, pp512) | {tg:.1f} | — | {pp:.1f} | {peak} |")
table = "\n".join(lines)
print(table)
open(f"{out}/{qtype}.md", "w").write(table + "\n")
PY
