#!/usr/bin/env bash
# Fuzzes what a deployment reads from outside with libFuzzer (Debian's clang, with ASan and
# UBSan): the safetensors header reader, the config.json reader, the tokenizer.json loader, the
# TCP data-plane frame decoder, the gRPC GenerateRequest → engine conversion and the HTTP request
# parser with the OpenAI API's body parser (tests/fuzz/parser_targets.h), plus the tokenizer itself
# (scripts/fuzz-tokenizer.sh). Each target starts from its committed seeds
# (tests/fuzz/corpus/<target>) and every input that ever broke it (tests/fuzz/regressions/);
# what it finds goes to build-fuzz/<target>/crash-*: keep such an input under
# tests/fuzz/regressions/<target>/ once fixed (fuzz_regression_test replays it in the suite).
# Prints one table row per target: runs, coverage (edges, features), corpus size, result.
#   scripts/fuzz.sh                    # every target, 60 s each
#   scripts/fuzz.sh safetensors 600    # one target, 10 minutes
# Needs clang and libclang-rt-14-dev (scripts/install-deps.sh installs them).
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
targets=(safetensors gguf config_json tokenizer_json tcp_frame generate_request http_request)
[ $# -ge 1 ] && [ "$1" != all ] && targets=("$1")
seconds="${2:-60}"
for t in "${targets[@]}"; do
  case " ${targets[*]} " in *" $t "*) ;; *)
    echo "fuzz: unknown target '$t' (safetensors, gguf, config_json, tokenizer_json, tcp_frame," \
      "generate_request, http_request)" >&2; exit 2 ;;
  esac
done
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install -y clang libclang-rt-14-dev)" >&2; exit 2; }
srcs=(common/safetensors.cc common/gguf.cc common/mapped_pages.cc common/json_document.cc common/model_config.cc common/utf8.cc
      common/comm/tcp/frame.cc coordinator/tokenizer/*.cc coordinator/server/request_conversion.cc
      coordinator/http/openai_request.cc tests/fuzz/parser_targets.cc tests/fuzz/request_targets.cc)
bin=build-fuzz/parser_fuzz
mkdir -p build-fuzz/gen
if [ ! -x "$bin" ] || [ -n "$(find "${srcs[@]}" tests/fuzz/*.h tests/fuzz/fuzz_main.cc common/*.h \
    common/comm/tcp/*.h coordinator/tokenizer/*.h coordinator/http/*.h coordinator/server/*.h \
    coordinator/serving/*.h proto/dsv2/v1/*.proto -newer "$bin" 2>/dev/null)" ]; then
  echo "fuzz: building $bin" >&2
  protoc -I proto --cpp_out=build-fuzz/gen proto/dsv2/v1/inference.proto
  # shellcheck disable=SC2046
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I. -Ibuild-fuzz/gen -DDSV2_FUZZ_TOKENIZER_DIR="\"$(pwd)/assets/demo-model\"" \
    "${srcs[@]}" build-fuzz/gen/dsv2/v1/inference.pb.cc tests/fuzz/fuzz_main.cc \
    $(pkg-config --cflags --libs libpcre2-8 absl_status absl_statusor absl_strings \
      absl_str_format absl_flat_hash_map absl_hash protobuf grpc++) -o "$bin"
fi
rows=()
for t in "${targets[@]}"; do
  out="build-fuzz/$t"
  mkdir -p "$out/corpus"
  cp -n tests/fuzz/corpus/"$t"/* "$out/corpus/" 2>/dev/null || true
  [ -d "tests/fuzz/regressions/$t" ] && cp -n tests/fuzz/regressions/"$t"/* "$out/corpus/" 2>/dev/null || true
  echo "fuzz: $t for $seconds s" >&2
  set +e
  DSV2_FUZZ_TARGET="$t" "$bin" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" >"$out/last.log" 2>&1
  code=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/last.log" | tail -1)
  cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$out/last.log" | tail -1 |
        sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 edges, \2 features | \3/p')
  result=clean
  # (ls fails for the kinds of artifact that are absent: not a reason to stop before the table)
  [ "$code" -ne 0 ] && result="FOUND (exit $code): $( (ls "$out"/crash-* "$out"/leak-* "$out"/timeout-* 2>/dev/null || true) | head -1)"
  rows+=("| $t | $seconds | ${runs:-?} | ${cov:-? | ?} | $result |")
done
echo
echo "| target | seconds | runs | coverage | corpus | result |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
for r in "${rows[@]}"; do case "$r" in *FOUND*) exit 1 ;; esac; done
