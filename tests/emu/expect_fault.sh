#!/usr/bin/env bash
# expect_fault.sh BINARY FILTER REGEX: passes only if BINARY (a planted-fault build of the
# emulated op tests) fails the tests matching FILTER and its output matches REGEX.
set -uo pipefail
bin="$1" filter="$2" expect="$3"
out=$("$bin" --gtest_filter="$filter" 2>&1)
rc=$?
if [ "$rc" = 0 ]; then
  echo "expect_fault: the planted fault went unnoticed: $filter passed"
  echo "$out" | tail -n 20
  exit 1
fi
if ! grep -qE "$expect" <<<"$out"; then
  echo "expect_fault: $filter failed (exit $rc), but not with /$expect/:"
  echo "$out" | tail -n 40
  exit 1
fi
echo "expect_fault: caught (exit $rc): $(grep -m1 -E "$expect" <<<"$out")"
