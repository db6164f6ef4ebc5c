#!/usr/bin/env bash
# Regenerate tests/data/golden/lite/long_context.safetensors (tools/make_long_context_fixture.py)
# with the pinned reference environment of make_golden_fixtures.sh.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/pinned_venv.sh
source "$here/pinned_venv.sh"
pinned_venv requirements-fixtures.txt
exec "$venv_python" "$here/make_long_context_fixture.py" "$@"
