#!/usr/bin/env bash
# Regenerate tests/data/golden/ with the pinned reference environment.
# Usage: tools/make_golden_fixtures.sh [args for make_golden_fixtures.py, e.g. --only lite]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-fixtures"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
fi
"$venv/bin/pip" install --quiet -r "$here/requirements-fixtures.txt"
exec "$venv/bin/python" "$here/make_golden_fixtures.py" "$@"
