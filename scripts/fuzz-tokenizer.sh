#!/usr/bin/env bash
# Builds tests/fuzz/tokenizer_fuzz.cc with Debian's clang (libFuzzer + ASan + UBSan) and runs it
# for a bounded time. Not part of ctest.
#   scripts/fuzz-tokenizer.sh [SECONDS]     # default 60
# Needs clang and libclang-rt-14-dev (apt-get install -y clang libclang-rt-14-dev).
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! command -v clang++ >/dev/null; then
  echo "fuzz-tokenizer: clang++ not found (apt-get install -y clang libclang-rt-14-dev)" >&2
  exit 2
fi
out=build-fuzz
mkdir -p "$out/corpus"
srcs=(coordinator/tokenizer/*.cc common/json_document.cc common/utf8.cc tests/fuzz/tokenizer_fuzz.cc)
if [ ! -x "$out/tokenizer_fuzz" ] || [ -n "$(find "${srcs[@]}" coordinator/tokenizer/*.h \
    -newer "$out/tokenizer_fuzz" 2>/dev/null)" ]; then
  echo "fuzz-tokenizer: building $out/tokenizer_fuzz" >&2
  # shellcheck disable=SC2046
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I. -DDSV2_TOKENIZER_DATA="\"$(pwd)/tests/data/tokenizer\"" "${srcs[@]}" \
    $(pkg-config --cflags --libs libpcre2-8 absl_status absl_statusor absl_strings \
      absl_str_format absl_flat_hash_map absl_hash) \
    -o "$out/tokenizer_fuzz"
fi
# Seeds: a few corpus strings, one per mode byte.
if [ -z "$(ls -A "$out/corpus")" ]; then
  i=0
  while IFS= read -r line && [ $i -lt 64 ]; do
    text=$(printf '%s' "$line" | sed -e 's/^{"text":"//' -e 's/"}$//')
    printf '\x00%s' "$text" >"$out/corpus/seed_v3_$i"
    printf '\x01%s' "$text" >"$out/corpus/seed_v2_$i"
    i=$((i + 1))
  done < <(sed -n '1~30p' tests/data/tokenizer/corpus.jsonl)
  printf '\x03\\s+(?!\\S)|\\p{L}+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+' >"$out/corpus/seed_re"
fi
"$out/tokenizer_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus"
