#!/usr/bin/env bash
# Fetches the source distribution of xgrammar (the grammar engine of vLLM, SGLang and
# TensorRT-LLM) from PyPI into third_party/xgrammar-VERSION, once: its C++ core (cpp/, include/
# and the headers it vendors under 3rdparty/) is built by our CMake as a static library
# (cmake/xgrammar.cmake). The archive's SHA-256 is checked against the pin below. Idempotent.
# (Debian's picojson-dev does not do for it: xgrammar includes its own patched picojson, with
# ordered objects and 64-bit integers.)
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

version=0.2.9
sha256=87b466bca2475e29bb0323abc62c6c33cbcbcff47e5fb800a3e2099ac9620b90
dest="third_party/xgrammar-$version"
[ -f "$dest/.complete" ] && exit 0

echo "fetch-xgrammar: xgrammar $version (source distribution, PyPI) into $dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$version" "$sha256" "$tmp/xgrammar.tar.gz" <<'PY'
import hashlib, re, sys, urllib.parse, urllib.request
version, want, out = sys.argv[1:4]
index = "https://pypi.org/simple/xgrammar/"  # the PEP 503 index pip reads
with urllib.request.urlopen(index, timeout=60) as r:
    page = r.read().decode()
name = f"xgrammar-{version}.tar.gz"
links = [h for h in re.findall(r'href="([^"]+)"', page) if h.split("#")[0].endswith("/" + name)]
if not links:
    sys.exit(f"fetch-xgrammar: {index} lists no {name}")
with urllib.request.urlopen(urllib.parse.urljoin(index, links[0].split("#")[0]), timeout=300) as r:
    data = r.read()
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"fetch-xgrammar: {name} has SHA-256 {got}, expected {want}")
open(out, "wb").write(data)
PY
mkdir -p "$tmp/src"
tar -xzf "$tmp/xgrammar.tar.gz" -C "$tmp/src" --strip-components=1
rm -rf "$dest" && mkdir -p third_party
mv "$tmp/src" "$dest"
touch "$dest/.complete"
