#!/usr/bin/env bash
# Our CPU engine beside llama.cpp on the same bf16 weights, alternating in one invocation.
#   bench/compare_llamacpp.sh [--rounds 5] [--threads 2] [--layers 4] [--out bench/out/compare]
#                             [--dtype float32|bfloat16] [--weights bf16|q8_0|q4_k_m]
#                             [--long 2048,8192] [--no-docs]
# 1. builds llama.cpp from the llama-cpp-python source distribution on PyPI (its vendored tree,
#    CPU only, GGML_NATIVE), cached in bench/out/llamacpp/;
# 2. writes a random V2-Lite-shaped checkpoint (real widths, 64 experts top-6, 2 shared, the
#    DeepSeek-V3 tokenizer's 129,280-row vocabulary; --layers decoder layers) with
#    dsv2-make-checkpoint, and converts it with that tree's convert_hf_to_gguf.py to a bf16 GGUF
#    (q_lora_rank written as 0: llama.cpp reads a deepseek2 file without it as "lite" only at
#    26/27 layers);
# 3. checks that both engines continue the same token ids with the same greedy tokens;
# 4. alternates, --rounds times: our model_bench (decode batch 1, 8, 32; prefill 512; in
#    --dtype: float32, the verification mode, or bfloat16 activations and cache) and
#    llama-bench (tg32 at depth 16, pp512) + llama-batched-bench (16-token prompts, 32 tokens
#    each at 8 and 32 sequences);
# 5. prints the medians side by side and writes OUT/compare.{md,json,png}; docs/BENCHMARKS.md's
#    section between the compare_llamacpp markers (compare_llamacpp_bfloat16 for --dtype
#    bfloat16) is regenerated from it (unless --no-docs).
# --long N,...: in each round also prefill N tokens (model_bench --prefill-tokens N; llama-bench
#    -p N) and decode at depth N (model_bench --context N; llama-bench -d N -n 32): rows
#    "prefill N" and "decode at depth N" in the table.
# --weights q8_0|q4_k_m: quantized weights instead, in two files of that format: one made by
#    llama.cpp's llama-quantize from its bf16 GGUF, one by our dsv2-quantize from the
#    checkpoint. Both engines run both files (greedy check, rounds, one table each: OUT/llamacpp/
#    and OUT/dsv2/, docs sections compare_llamacpp_<weights>_{llamacpp,dsv2}). On a CPU with
#    AMX llama.cpp's default repacking aborts on these files (issue 30); not handled here.
# Needs ~20 GB of disk (checkpoint + GGUF, reused by later runs) and ~16 GB of memory.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

rounds=5 threads=2 layers=4 out=bench/out/compare docs=1 dtype=float32 weights=bf16 long=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --weights) weights="$2"; shift 2 ;;
    --long) long="$2"; shift 2 ;;
    --no-docs) docs=0; shift ;;
    *) echo "compare_llamacpp: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in rounds threads layers; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "compare_llamacpp: --$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
[[ "$dtype" == float32 || "$dtype" == bfloat16 ]] ||
  { echo "compare_llamacpp: --dtype must be float32 or bfloat16, got '$dtype'" >&2; exit 2; }
[[ "$weights" == bf16 || "$weights" == q8_0 || "$weights" == q4_k_m ]] ||
  { echo "compare_llamacpp: --weights must be bf16, q8_0 or q4_k_m, got '$weights'" >&2; exit 2; }
[[ -z "$long" || "$long" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  { echo "compare_llamacpp: --long must be comma-separated token counts, got '$long'" >&2; exit 2; }
say() { echo "compare: $*" >&2; }

vocab=129280  # DeepSeek-V3's tokenizer (the checkpoint llamacpp_bf16_pair writes)
cache="$root/bench/out/llamacpp"
mkdir -p "$out" "$cache"

# --- the machine ---------------------------------------------------------------------------
cpu_model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
isa=""
for f in avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8; do
  grep -qw "$f" /proc/cpuinfo && isa+="$f "
done
say "CPU: $cpu_model, $(nproc) cores; ISA: ${isa:-none of avx2/avx512/amx}; $threads threads"

# --- our build, the Python environment -----------------------------------------------------
[ -x build/bin/model_bench ] && [ -x build/bin/dsv2-generate ] && [ -x build/bin/dsv2-make-checkpoint ] &&
  [ -x build/bin/dsv2-quantize ] ||
  { say "building dsv2 (scripts/build.sh)"; scripts/build.sh >/dev/null; }
say "Python environment (tools/.venv-fixtures: torch, transformers, the converter's needs)"
# shellcheck source=tools/pinned_venv.sh
source tools/pinned_venv.sh
pinned_venv requirements-fixtures.txt requirements-llamacpp.txt

# --- llama.cpp -----------------------------------------------------------------------------
# shellcheck source=bench/llamacpp_setup.sh
source bench/llamacpp_setup.sh
llamacpp_setup "$cache"
src="$llamacpp_src" lbuild="$llamacpp_build"
greedy="$(llamacpp_tool llamacpp_greedy)"

# --- the checkpoint and its GGUF -----------------------------------------------------------
llamacpp_bf16_pair "$layers" "$cache"
ckpt="$pair_ckpt" gguf="$pair_gguf"

# --- the files each engine runs ---------------------------------------------------------------
# pairs: name, our model (checkpoint directory or GGUF), llama.cpp's GGUF; one table each.
pairs=() ours_models=() their_models=()
if [ "$weights" = bf16 ]; then
  pairs=(bf16) ours_models=("$ckpt") their_models=("$gguf")
else
  upper="$(echo "$weights" | tr a-z A-Z)"
  theirs_q="$cache/v2lite-${layers}l-v3vocab-$upper.gguf"
  if [ ! -f "$theirs_q" ]; then
    say "quantizing to $upper with llama.cpp's llama-quantize"
    "$lbuild/bin/llama-quantize" "$gguf" "$theirs_q.part" "$upper" "$threads" \
      >"$cache/quantize-$upper.log" 2>&1 || { tail -20 "$cache/quantize-$upper.log" >&2; exit 1; }
    mv "$theirs_q.part" "$theirs_q"
  fi
  qdir="$root/bench/out/quant"
  ours_q="$qdir/v2lite-${layers}l-dsv2-$upper.gguf"
  mkdir -p "$qdir"
  cp "$ckpt/tokenizer.json" "$ckpt/tokenizer_config.json" "$qdir/" 2>/dev/null || true
  cp "$ckpt/tokenizer.json" "$ckpt/tokenizer_config.json" "$cache/" 2>/dev/null || true
  if [ ! -f "$ours_q" ] || [ build/bin/dsv2-quantize -nt "$ours_q" ]; then
    say "quantizing to $upper with dsv2-quantize"
    build/bin/dsv2-quantize "$ckpt" "$ours_q" --type "$weights" --threads "$threads" \
      2>"$qdir/quantize-$upper.log" || { tail -20 "$qdir/quantize-$upper.log" >&2; exit 1; }
  fi
  pairs=(llamacpp dsv2) ours_models=("$theirs_q" "$ours_q") their_models=("$theirs_q" "$ours_q")
fi

# --- the same greedy tokens ------------------------------------------------------------------
prompt="$("$venv_python" -c "print(','.join(str((1000 + 37 * i) % $vocab) for i in range(16)))")"
new_tokens=16
declare -A greedy_same ours_ids
for i in "${!pairs[@]}"; do
  p="${pairs[$i]}" pout="$out"
  [ "$weights" = bf16 ] || pout="$out/$p"
  mkdir -p "$pout"
  say "greedy check ($p file): $new_tokens tokens after 16 prompt ids, both engines"
  ours_ids[$p]="$(build/bin/dsv2-generate --model "${ours_models[$i]}" --prompt-ids "$prompt" \
    --max-new-tokens "$new_tokens" --stop_at_eos=false --threads "$threads" 2>/dev/null | tail -1)"
  theirs_ids="$("$greedy" "${their_models[$i]}" "$prompt" "$new_tokens" "$threads" \
    2>"$pout/greedy-llamacpp.log" | tail -1)"
  echo "${ours_ids[$p]}" >"$pout/greedy-ours.txt"
  echo "$theirs_ids" >"$pout/greedy-llamacpp.txt"
  if [ "${ours_ids[$p]}" != "$theirs_ids" ]; then
    say "greedy tokens differ:"
    say "  dsv2      ${ours_ids[$p]}"
    say "  llama.cpp $theirs_ids"
    greedy_same[$p]=false
  else
    say "greedy tokens identical: ${ours_ids[$p]}"
    greedy_same[$p]=true
  fi
done

# --- alternating rounds --------------------------------------------------------------------
for r in $(seq 1 "$rounds"); do
  for i in "${!pairs[@]}"; do
    p="${pairs[$i]}" pout="$out"
    [ "$weights" = bf16 ] || pout="$out/$p"
    say "round $r/$rounds ($p file): dsv2 model_bench"
    build/bin/model_bench --model "${ours_models[$i]}" --dtype "$dtype" --threads "$threads" --runs 1 \
      --batch-sizes 1,8,32 --decode-tokens 32 --prefill-tokens 512 --json "$pout/ours-$r.json" \
      >/dev/null 2>"$pout/ours-$r.log"
    say "round $r/$rounds ($p file): llama-bench (tg32 at depth 16, pp512) and llama-batched-bench (8, 32)"
    "$lbuild/bin/llama-bench" -m "${their_models[$i]}" -t "$threads" -p 0 -n 32 -d 16 -r 1 -o json \
      >"$pout/llama-tg-$r.json" 2>"$pout/llama-tg-$r.log"
    "$lbuild/bin/llama-bench" -m "${their_models[$i]}" -t "$threads" -p 512 -n 0 -r 1 -o json \
      >"$pout/llama-pp-$r.json" 2>"$pout/llama-pp-$r.log"
    "$lbuild/bin/llama-batched-bench" -m "${their_models[$i]}" -t "$threads" -tb "$threads" -c 2048 \
      -b 2048 -ub 512 -npp 16 -ntg 32 -npl 8,32 --output-format jsonl \
      >"$pout/llama-batched-$r.jsonl" 2>"$pout/llama-batched-$r.log"
    for n in ${long//,/ }; do
      say "round $r/$rounds ($p file): prefill $n and decode at depth $n, both engines"
      build/bin/model_bench --model "${ours_models[$i]}" --dtype "$dtype" --threads "$threads" \
        --runs 1 --batch-sizes 1 --decode-tokens 32 --context "$n" --prefill-tokens "$n" \
        --json "$pout/ours-long-$n-$r.json" >/dev/null 2>"$pout/ours-long-$n-$r.log"
      "$lbuild/bin/llama-bench" -m "${their_models[$i]}" -t "$threads" -p "$n" -n 0 -r 1 -o json \
        >"$pout/llama-pp-$n-$r.json" 2>"$pout/llama-pp-$n-$r.log"
      "$lbuild/bin/llama-bench" -m "${their_models[$i]}" -t "$threads" -p 0 -n 32 -d "$n" -r 1 \
        -o json >"$pout/llama-tg-$n-$r.json" 2>"$pout/llama-tg-$n-$r.log"
    done
  done
done

for i in "${!pairs[@]}"; do
  p="${pairs[$i]}" pout="$out" weights_args=()
  if [ "$weights" != bf16 ]; then
    pout="$out/$p"
    maker="llama.cpp's llama-quantize (from its bf16 GGUF)"
    [ "$p" = dsv2 ] && maker="our dsv2-quantize (from the checkpoint)"
    weights_args=(--weights "$weights" --file-maker "$maker" --section-suffix "${weights}_$p")
  fi
  docs_arg=()
  [ "$docs" = 1 ] && docs_arg=(--docs docs/BENCHMARKS.md)
  "$venv_python" bench/compare_llamacpp_report.py --out "$pout" --rounds "$rounds" \
    --threads "$threads" --cpu "$cpu_model" --isa "$isa" --layers "$layers" --dtype "$dtype" \
    --llamacpp "llama.cpp of llama-cpp-python $llamacpp_py_version (ggml ${ggml_version:-?})" \
    --greedy-same "${greedy_same[$p]}" --greedy-ids "${ours_ids[$p]}" "${weights_args[@]}" \
    --long "$long" \
    "${docs_arg[@]}"
done
