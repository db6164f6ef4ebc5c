#!/usr/bin/env bash
# The README's run command. Installs what is missing, builds, and runs the engine on a model.
#   scripts/run.sh                 # the built-in demo checkpoint (random weights)
#   scripts/run.sh --model DIR     # a real DeepSeek-V2-family checkpoint
# Until the gRPC server lands (issue 4) this runs greedy generation with dsv2-generate.
set -euo pipefail
cd "$(dirname "$0")/.."

model=""
prompt_ids="100000,1234,42,7,99"
max_new=16
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --prompt-ids) prompt_ids="$2"; shift 2 ;;
    --max-new-tokens) max_new="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
if [ ! -x build/bin/dsv2-generate ] || [ ! -x build/bin/dsv2-make-checkpoint ]; then
  scripts/build.sh
fi

if [ -z "$model" ]; then
  model="build/demo-model"
  if [ ! -f "$model/model.safetensors.index.json" ]; then
    echo "run.sh: writing the built-in demo checkpoint (random weights) to $model"
    build/bin/dsv2-make-checkpoint --preset demo --out "$model"
  fi
fi

echo "run.sh: greedy generation with $model"
build/bin/dsv2-generate --model "$model" --prompt-ids "$prompt_ids" --max-new-tokens "$max_new"
