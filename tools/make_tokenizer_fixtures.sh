#!/usr/bin/env bash
# Regenerates the tokenizer fixtures under tests/data/tokenizer/ (and the Unicode tables of
# coordinator/tokenizer/) with Hugging Face `tokenizers` in a virtual environment at
# tools/.venv-tokenizer. CI never runs this: its outputs are committed.
#   tools/make_tokenizer_fixtures.sh              # everything
#   tools/make_tokenizer_fixtures.sh bench-text OUT.txt
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
venv=tools/.venv-tokenizer
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r tools/requirements-tokenizer.txt
exec "$venv/bin/python" tools/make_tokenizer_fixtures.py "$@"
