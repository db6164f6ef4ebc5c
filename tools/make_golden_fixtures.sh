#!/usr/bin/env bash
# Regenerate tests/data/golden/ with the pinned reference environment.
# Usage: tools/make_golden_fixtures.sh [args for make_golden_fixtures.py, e.g. --only lite]
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/pinned_venv.sh
source "$here/pinned_venv.sh"
pinned_venv requirements-fixtures.txt
exec "$venv_python" "$here/make_golden_fixtures.py" "$@"
