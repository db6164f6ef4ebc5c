# Sourced by the reference tools' scripts (make_golden_fixtures.sh, train_demo_model.sh): makes
# once, then brings up to date, the one pinned environment they share, tools/.venv-fixtures
# (torch alone is gigabytes: one copy), and sets $venv_python.
#   pinned_venv requirements-fixtures.txt [more requirement files under tools/]
pinned_venv() {
  local here venv args=() req
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  venv="$here/.venv-fixtures"
  if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
  fi
  for req in "$@"; do args+=(-r "$here/$req"); done
  "$venv/bin/pip" install --quiet "${args[@]}"
  venv_python="$venv/bin/python"
}
