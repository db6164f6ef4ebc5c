#!/usr/bin/env bash
# ctest entry of tests/e2e/openai_client_test.py: a virtual environment with the official
# `openai` package and `prometheus_client` (pinned) in the build tree, then the checks.
# Exit 77 (skipped) when PyPI cannot be reached to install them.
#   tests/e2e/openai_client_test.sh BUILD_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: openai_client_test.sh BUILD_DIR}"
venv="$build/openai-venv"
if ! "$venv/bin/python" -c "import openai, prometheus_client" 2>/dev/null; then
  rm -rf "$venv"
  if ! /usr/bin/python3 -m venv "$venv" >/dev/null 2>&1 ||
     ! "$venv/bin/pip" install -q --disable-pip-version-check openai==2.8.1 \
         prometheus-client==0.23.1 >"$build/openai-venv.log" 2>&1; then
    echo "openai_client_test: SKIPPED: could not install openai/prometheus-client (see $build/openai-venv.log)"
    rm -rf "$venv"
    exit 77
  fi
fi
exec "$venv/bin/python" "$here/openai_client_test.py" --bin-dir "$build/bin"
