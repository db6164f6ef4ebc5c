#!/usr/bin/env bash
# Regenerate tests/data/demo/llamacpp-Q4_K_M.gguf and tests/data/demo/llamacpp_logits.safetensors,
# the fixtures of tests/golden/llamacpp_agreement_test.cc (issue 30, part 4), with llama.cpp's
# own tools (the llama.cpp of bench/llamacpp_setup.sh, built in bench/out/llamacpp/):
# 1. convert_hf_to_gguf.py converts the demo model (assets/demo-model) to an f32 GGUF. The
#    converter knows pre-tokenizers by a hash of their output; the demo tokenizer is a small
#    retrained one with DeepSeek-V2's pre-tokenizer, so it is named "deepseek-llm" (llama.cpp's
#    name for that pre-tokenizer) instead of hashed. q_lora_rank is written as 0, as
#    bench/compare_llamacpp.sh does.
# 2. llama-quantize makes Q4_K_M of it (the committed file), and dequantizes that back to f32:
#    the same weight values, run by llama.cpp without quantized activations.
# 3. bench/llamacpp_logits.cc runs both on the demo model's held-out windows
#    (tests/data/demo/reference.safetensors: 8 windows of 256 ids) and keeps the 64 most likely
#    next tokens with their log-probabilities at each position:
#      q4_k_m_top_ids / q4_k_m_top_logprobs  llama.cpp on the Q4_K_M file, as users run it
#                                            (activations quantized to 8 bits per block)
#      exact_top_ids / exact_top_logprobs    llama.cpp on its dequantized f32 copy
# Usage: tools/make_llamacpp_fixtures.sh [--threads 2]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    *) echo "make_llamacpp_fixtures: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "make_llamacpp_fixtures: $*" >&2; }
# shellcheck source=tools/pinned_venv.sh
source tools/pinned_venv.sh
pinned_venv requirements-fixtures.txt requirements-llamacpp.txt
# shellcheck source=bench/llamacpp_setup.sh
source bench/llamacpp_setup.sh
llamacpp_setup "$root/bench/out/llamacpp"
logits_tool="$(llamacpp_tool llamacpp_logits)"

work="$root/bench/out/demo-llamacpp"
rm -rf "$work" && mkdir -p "$work/hf-view"
for f in assets/demo-model/*; do ln -s "$root/$f" "$work/hf-view/"; done
rm "$work/hf-view/config.json"
"$venv_python" -c 'import json,sys; c=json.load(open(sys.argv[1])); c["q_lora_rank"]=0; json.dump(c,open(sys.argv[2],"w"),indent=2)' \
  assets/demo-model/config.json "$work/hf-view/config.json"

say "converting assets/demo-model with convert_hf_to_gguf.py (pre-tokenizer deepseek-llm)"
"$venv_python" - "$llamacpp_src" "$work/hf-view" "$work/demo-f32.gguf" >"$work/convert.log" 2>&1 <<'PY' ||
import runpy, sys
src, view, out = sys.argv[1:]
sys.path.insert(0, src)
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-llm"
sys.argv = [f"{src}/convert_hf_to_gguf.py", view, "--outtype", "f32", "--outfile", out]
runpy.run_path(sys.argv[0], run_name="__main__")
PY
  { tail -20 "$work/convert.log" >&2; exit 1; }

say "llama-quantize: Q4_K_M, and back to f32"
"$llamacpp_build/bin/llama-quantize" "$work/demo-f32.gguf" "$work/demo-Q4_K_M.gguf" Q4_K_M \
  "$threads" >"$work/quantize.log" 2>&1 || { tail -20 "$work/quantize.log" >&2; exit 1; }
"$llamacpp_build/bin/llama-quantize" --allow-requantize "$work/demo-Q4_K_M.gguf" \
  "$work/demo-Q4_K_M-f32.gguf" F32 "$threads" >"$work/dequantize.log" 2>&1 ||
  { tail -20 "$work/dequantize.log" >&2; exit 1; }

say "llama.cpp's next-token distributions on the held-out windows"
"$venv_python" -c '
import sys
from safetensors.numpy import load_file
ids = load_file(sys.argv[1])["heldout_ids"]
open(sys.argv[2], "w").write("".join(",".join(str(int(x)) for x in row) + "\n" for row in ids))
' tests/data/demo/reference.safetensors "$work/windows.txt"
for name in Q4_K_M Q4_K_M-f32; do
  "$logits_tool" "$work/demo-$name.gguf" "$work/windows.txt" "$work/logits-$name.safetensors" 64 \
    "$threads" 2>"$work/logits-$name.log"
done

"$venv_python" - "$work" "$ggml_version" "$llamacpp_py_version" <<'PY'
import sys
from safetensors import safe_open
from safetensors.numpy import save_file
work, ggml, py_version = sys.argv[1:]
tensors, meta = {}, {"llama_cpp": f"llama.cpp of llama-cpp-python {py_version} (ggml {ggml})",
                     "windows": "tests/data/demo/reference.safetensors heldout_ids"}
for prefix, name in (("q4_k_m", "Q4_K_M"), ("exact", "Q4_K_M-f32")):
    with safe_open(f"{work}/logits-{name}.safetensors", "np") as f:
        for key in f.keys():
            tensors[f"{prefix}_{key}"] = f.get_tensor(key)
        for key, value in f.metadata().items():
            meta[f"{prefix}_{key}"] = value
save_file(tensors, "tests/data/demo/llamacpp_logits.safetensors", metadata=meta)
PY
cp "$work/demo-Q4_K_M.gguf" tests/data/demo/llamacpp-Q4_K_M.gguf
say "wrote tests/data/demo/llamacpp-Q4_K_M.gguf ($(stat -c %s tests/data/demo/llamacpp-Q4_K_M.gguf) bytes) and tests/data/demo/llamacpp_logits.safetensors"
