#!/usr/bin/env bash
# Encode throughput, one thread, dsv2 vs Hugging Face tokenizers on the same >= 1 MB of mixed
# text in the same invocation. Prints a Markdown table (docs/BENCHMARKS.md, "## Tokenizer").
#   bench/tokenizer_compare.sh [RUNS]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
runs="${1:-7}"
mkdir -p bench/out
text=bench/out/bench_text.txt
tools/make_tokenizer_fixtures.sh bench-text "$text" >&2
build="${DSV2_BUILD_DIR:-build}"
if ! { cmake -S . -B "$build" >/dev/null &&
  cmake --build "$build" -j "${DSV2_BUILD_JOBS:-2}" --target tokenizer_bench >&2; }; then
  [ -x "$build/bin/tokenizer_bench" ] || { echo "tokenizer_compare: build failed" >&2; exit 1; }
  echo "tokenizer_compare: build failed; using the existing $build/bin/tokenizer_bench" >&2
fi
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
bytes=$(wc -c <"$text")
echo "Text: $text, $bytes bytes (tools/tokenizer_corpus.py bench_text, seed 99); median of $runs runs"
echo "after one warm-up run; one thread; tokenizers $(tools/.venv-tokenizer/bin/python -c \
  'import tokenizers; print(tokenizers.__version__)'); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
echo
echo "| tokenizer | mode | dsv2 MB/s | HF tokenizers MB/s | dsv2 / HF | tokens (dsv2 = HF) |"
echo "|---|---|---|---|---|---|"
for tok in v3 v2; do
  dir=tests/data/tokenizer/$tok
  ours=$("$build/bin/tokenizer_bench" --tokenizer "$dir" --text "$text" --runs "$runs" \
    --json "bench/out/tokenizer_$tok.json")
  hf=$(tools/.venv-tokenizer/bin/python tools/bench_hf_tokenizer.py "$dir" "$text" "$runs" whole,lines)
  for mode in whole lines; do
    o=$(echo "$ours" | awk -v m="$mode" '$2 == m {print $3, $5}')
    h=$(echo "$hf" | awk -v m="$mode" '$2 == m {print $3, $5}')
    read -r o_mbs o_tok <<<"$o"
    read -r h_mbs h_tok <<<"$h"
    same=$([ "$o_tok" = "$h_tok" ] && echo "$o_tok (same)" || echo "$o_tok vs $h_tok (DIFFER)")
    ratio=$(awk -v a="$o_mbs" -v b="$h_mbs" 'BEGIN {printf "%.1fx", a / b}')
    name=$([ "$tok" = v3 ] && echo "DeepSeek-V3 (real)" || echo "V2-style (trained)")
    echo "| $name | $mode | $o_mbs | $h_mbs | $ratio | $same |"
  done
done
