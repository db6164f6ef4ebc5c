# `scripts/gpu-check.sh rehearse [--mechanical]` (sourced by gpu-check.sh): the GPU check on
# this machine, no GPU. Without --mechanical: the real pack (build-gpu/) and a real run, whose
# stages all fail for want of a GPU, checked for the sizes, the files and the summary. With
# --mechanical (the ctest GpuCheckRehearsal): stand-in programs instead of the build, so the
# script's own logic is checked in seconds: the size arithmetic and the refusal, a full run
# inside its budget with the table after every stage, a small budget skipping the stages that
# would not fit, a skipped test counted as a failure, and a run killed halfway.

rh_fail() {
  say "REHEARSAL FAILED: $*"
  exit 1
}

# Stand-ins for the packed programs, nvidia-smi and compute-sanitizer. Environment:
# DSV2_STUB_SLEEP (seconds each program takes), DSV2_STUB_SKIP (a test program that skips).
write_stubs() {  # dir
  mkdir -p "$1/bin" "$1/lib" "$1/path"
  cat >"$1/bin/stub" <<'EOF'
#!/usr/bin/env bash
name=$(basename "$0")
sleep "${DSV2_STUB_SLEEP:-0}"
json=""
prev=""
for a in "$@"; do
  [ "$prev" = --json ] && json="$a"
  case "$a" in --out=*) mkdir -p "${a#--out=}" ;; esac
  [ "$prev" = --out ] && mkdir -p "$a"
  prev="$a"
done
case "$name" in
  *_test)
    if [ "${DSV2_STUB_SKIP:-}" = "$name" ]; then
      echo "[  PASSED  ] 2 tests."; echo "[  SKIPPED ] 1 test, listed below:"; exit 0
    fi
    echo "[==========] 3 tests from 1 test suite ran."; echo "[  PASSED  ] 3 tests." ;;
  model_bench)
    if [[ " $* " == *" --bandwidth-only "* ]]; then
      echo '{"device": "stub", "bandwidth_gbs": 4000}' >"$json"
    else
      echo '{"bandwidth_gbs": 4000, "decode_bytes_per_token": 5e9, "decode": [{"batch": 1,
        "tokens_per_s": 500, "graphed": true, "eager_tokens_per_s": 400}], "prefill_tokens":
        2048, "prefill_tokens_per_s": 30000}' >"$json"
    fi ;;
  load_generator)
    echo '{"levels": [{"output_tokens_per_s": 6000, "errors": 0, "ttft_ms": {"p50": 50,
      "p99": 90}, "itl_ms": {"p50": 9, "p99": 12}}]}' >"$json" ;;
  dsv2-coordinator | dsv2-worker) exec sleep 600 ;;
esac
exit 0
EOF
  chmod +x "$1/bin/stub"
  local b
  for b in "${PACK_BINS[@]}"; do ln -sf stub "$1/bin/$(basename "$b")"; done
  printf '#!/bin/sh\necho "Stub GPU, 1 MiB, 0.0, 9.0"\n' >"$1/path/nvidia-smi"
  printf '#!/bin/sh\nshift 4\n"$@"\necho "========= ERROR SUMMARY: 0 errors"\n' \
    >"$1/path/compute-sanitizer"
  chmod +x "$1/path/nvidia-smi" "$1/path/compute-sanitizer"
  echo "commit rehearsal (stand-in programs)" >"$1/MANIFEST"
}

# check_out DIR N: at most 8 files, a summary that parses, N stages recorded.
check_out() {
  local files
  files=$(find "$1" -type f | wc -l)
  [ "$files" -le 8 ] || rh_fail "$files files in $1 (at most 8 come back)"
  python3 - "$1/summary.json" "$2" <<'EOF' || rh_fail "summary in $1 unreadable or wrong"
import json, sys
s = json.load(open(sys.argv[1]))
want = sys.argv[2]
assert want == "any" or s["stages_done"] == int(want), (s["stages_done"], want)
assert s["stages_done"] == len(s["stages"]) >= 1
EOF
  grep -q "^| stage | status" "$1/summary.md" || rh_fail "no table in $1/summary.md"
  tar -tzf "$1/logs.tar.gz" >/dev/null || rh_fail "logs.tar.gz in $1 unreadable"
}

stage_field() {  # summary.json stage field
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]));
print(next(x[sys.argv[3]] for x in s["stages"] if x["stage"] == sys.argv[2]))' "$@"
}

rehearse_mechanical() {
  local w
  w=$(mktemp -d)
  write_stubs "$w/staging"
  make_archive "$w/staging" "$w/$ARCHIVE_NAME"
  export PATH="$w/staging/path:$PATH"

  say "rehearsal 1/6: what travels, and the refusal above ${LIMIT_MIB} MiB"
  check_travel "$w/$ARCHIVE_NAME" || rh_fail "a small archive was refused"
  local room=$((LIMIT_MIB * 1048576 - $(tree_bytes)))
  truncate -s $((room + 1)) "$w/big.tar.xz"
  if check_travel "$w/big.tar.xz" 2>/dev/null; then rh_fail "an archive 1 byte over passed"; fi
  truncate -s "$room" "$w/big.tar.xz"
  check_travel "$w/big.tar.xz" 2>/dev/null || rh_fail "an archive exactly at the limit failed"

  say "rehearsal 2/6: a full run, the table after every stage"
  local t=$SECONDS
  bash "$ROOT/scripts/gpu-check.sh" run --budget 420 --out "$w/out1" "$w/$ARCHIVE_NAME" \
    >"$w/run1.log" 2>&1 || rh_fail "the stand-in run failed: $(tail -n 30 "$w/run1.log")"
  check_out "$w/out1" 9
  [ "$(grep -c '^gpu-check: \[[0-9]/9\]' "$w/run1.log")" = 9 ] ||
    rh_fail "the table was not printed after each of the 9 stages"
  grep -q "verdict pass" "$w/run1.log" || rh_fail "the stand-in run's verdict is not pass"
  [ $((SECONDS - t)) -le 420 ] || rh_fail "the run outlasted its budget"

  say "rehearsal 3/6: a 100 s budget starts only the stages that fit"
  DSV2_STUB_SLEEP=1 bash "$ROOT/scripts/gpu-check.sh" run --budget 100 --out "$w/out2" \
    "$w/$ARCHIVE_NAME" >"$w/run2.log" 2>&1 && rh_fail "a run with skipped stages passed"
  check_out "$w/out2" 9
  python3 - "$w/out2/summary.json" <<'EOF' || rh_fail "budget arithmetic: $(cat "$w/out2/summary.md")"
import json, re, sys
s = json.load(open(sys.argv[1]))
elapsed = 0
skipped = 0
for st in s["stages"]:
    left = s["budget_s"] - 10 - elapsed  # what run_stage computes (within a second)
    if st["status"] == "skipped":
        m = re.search(r"needs (\d+) s, (-?\d+) s of the budget left", st["detail"])
        assert m and int(m.group(1)) > int(m.group(2)), st
        assert st["allotted"] > left - 2, (st, left)
        skipped += 1
    else:
        assert st["allotted"] <= left + 2, (st, left)
    elapsed += st["seconds"]
assert skipped >= 3, "expected the long stages to be skipped"
assert s["elapsed_s"] <= s["budget_s"]
EOF

  say "rehearsal 4/6: a skipped test on the GPU machine fails its stage"
  DSV2_STUB_SKIP=golden_cuda_test bash "$ROOT/scripts/gpu-check.sh" run --budget 420 \
    --out "$w/out3" "$w/$ARCHIVE_NAME" >"$w/run3.log" 2>&1 && rh_fail "a run with a skip passed"
  [ "$(stage_field "$w/out3/summary.json" golden-f32 status)" = fail ] ||
    rh_fail "the skip did not fail golden-f32"

  say "rehearsal 5/6: a run killed halfway leaves a readable summary"
  DSV2_STUB_SLEEP=2 setsid bash "$ROOT/scripts/gpu-check.sh" run --budget 420 --out "$w/out4" \
    "$w/$ARCHIVE_NAME" >"$w/run4.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 60); do
    [ -f "$w/out4/summary.json" ] &&
      [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages_done"])' \
        "$w/out4/summary.json" 2>/dev/null)" -ge 3 ] 2>/dev/null && break
    sleep 0.5
  done
  kill -KILL -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  check_out "$w/out4" any
  grep -q "incomplete" "$w/out4/summary.md" || rh_fail "the killed run's summary is not incomplete"

  say "rehearsal 6/6: the usage and bad arguments"
  bash "$ROOT/scripts/gpu-check.sh" run --budget 5 "$w/$ARCHIVE_NAME" >/dev/null 2>&1 &&
    rh_fail "--budget 5 was accepted"
  bash "$ROOT/scripts/gpu-check.sh" run --out "$w/out5" "$w/missing.tar.xz" >/dev/null 2>&1 &&
    rh_fail "a missing archive was accepted"
  say "the stand-in run's summary:"
  cat "$w/out1/summary.md" >&2
  say "the 100 s budget's summary:"
  cat "$w/out2/summary.md" >&2
  rm -rf "$w"
  say "rehearsal passed"
}

rehearse_full() {
  local w
  w=$(mktemp -d)
  pack gpu-pack
  say "the real run on this machine (no GPU: every stage fails, quickly)"
  local t=$SECONDS
  bash "$ROOT/scripts/gpu-check.sh" run --budget 420 --out "$w/out" >"$w/run.log" 2>&1 || true
  [ $((SECONDS - t)) -le 420 ] || rh_fail "the run outlasted its budget"
  check_out "$w/out" 9
  [ "$(grep -c '^gpu-check: \[[0-9]/9\]' "$w/run.log")" = 9 ] ||
    rh_fail "the table was not printed after each stage"
  cat "$w/out/summary.md" >&2
  rm -rf "$w"
  rehearse_mechanical
}

rehearse() {
  case "${1:-}" in
    --mechanical) rehearse_mechanical ;;
    "") rehearse_full ;;
    *) die "rehearse: [--mechanical]" ;;
  esac
}
