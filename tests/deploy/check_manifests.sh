#!/usr/bin/env bash
# ctest entry of the offline deploy checks (tests/deploy/check_manifests.py): finds kubectl
# (installs Debian's kubernetes-client when there is none and we are root), makes a virtual
# environment with the pinned validator in the build tree, runs the checks.
# Exit 77 (ctest: skipped) when kubectl or the validator cannot be had, saying which.
#   tests/deploy/check_manifests.sh BUILD_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: check_manifests.sh BUILD_DIR}"

kubectl_bin="$(command -v kubectl || true)"
if [ -z "$kubectl_bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "check_manifests: installing kubectl (Debian's kubernetes-client)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null 2>&1 || true
  kubectl_bin="$(command -v kubectl || true)"
fi
if [ -z "$kubectl_bin" ]; then
  echo "check_manifests: SKIPPED: no kubectl (apt-get install kubernetes-client)"
  exit 77
fi

venv="$build/deploy-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null; then
  rm -rf "$venv"
  if ! /usr/bin/python3 -m venv "$venv" >/dev/null 2>&1 ||
     ! "$venv/bin/pip" install -q --disable-pip-version-check \
         kubernetes-validate==1.37.0 PyYAML==6.0.2 >"$build/deploy-venv.log" 2>&1; then
    echo "check_manifests: SKIPPED: could not install kubernetes-validate from PyPI (see $build/deploy-venv.log)"
    rm -rf "$venv"
    exit 77
  fi
fi
echo "check_manifests: $("$kubectl_bin" version --client 2>/dev/null | head -n 2 | tr '\n' ' ')"
exec "$venv/bin/python" "$here/check_manifests.py" --kubectl "$kubectl_bin"
