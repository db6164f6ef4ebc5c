#!/usr/bin/env bash
# Installs the Debian 12 packages dsv2-serve builds with, skipping those already present, and
# fetches xgrammar's source distribution from PyPI (scripts/fetch-xgrammar.sh).
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac

packages=(
  build-essential cmake pkg-config git
  libabsl-dev libgtest-dev libgmock-dev
  libpcre2-dev libboost-dev nlohmann-json3-dev libssl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  python3 python3-venv python3-grpcio python3-protobuf python3-yaml
  ca-certificates  # HTTPS to PyPI (scripts/fetch-xgrammar.sh)
  iproute2  # the local-cluster rehearsal's network namespaces
  clang libclang-rt-14-dev  # libFuzzer and the sanitizers' runtime (scripts/fuzz.sh)
)
# kubectl renders deploy/k8s (tests/deploy, scripts/local-cluster.sh): Debian's
# kubernetes-client when no kubectl is installed (a newer one from elsewhere is fine too).
if ! command -v kubectl >/dev/null 2>&1; then packages+=(kubernetes-client); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Then xgrammar's C++ core (structured outputs) from its PyPI source distribution.
fetch_xgrammar="$(dirname "$0")/fetch-xgrammar.sh"

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exec "$fetch_xgrammar"
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
"$fetch_xgrammar"
