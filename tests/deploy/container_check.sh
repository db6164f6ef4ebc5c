#!/usr/bin/env bash
# The image of deploy/docker/Dockerfile, built and run where a container engine works: a Debian
# 12 base made here (debootstrap from the Debian registry, copied into an empty buildah
# container and committed), the
# Dockerfile built on it as a CPU build (BUILD_BASE = RUN_BASE = that base, WITH_CUDA=OFF), then
# dsv2-coordinator run inside the image as its non-root user, through to a streamed completion
# with the image's own dsv2-cli. buildah with chroot isolation: it works where nested
# containers with their own cgroups do not.
#   tests/deploy/container_check.sh WORK_DIR
# Exit 77 (skipped) when buildah, debootstrap or a chroot container cannot be had here.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:?usage: container_check.sh WORK_DIR}"
mkdir -p "$work"
say() { echo "container_check: $*"; }
skip() { say "SKIPPED: $*"; exit 77; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
   { ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; }; then
  say "installing buildah and debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null 2>&1 || true
fi
command -v buildah >/dev/null || skip "no buildah (apt-get install buildah)"
command -v debootstrap >/dev/null || skip "no debootstrap (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || skip "debootstrap and chroot isolation need root"
# No per-container ulimits: a sandbox may forbid raising them.
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"

base=localhost/dsv2-debian-base:12
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  say "debootstrap Debian 12 (minbase) from deb.debian.org"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian \
    >"$work/debootstrap.log" 2>&1 || skip "debootstrap failed (see $work/debootstrap.log)"
  # Debian 12's buildah (1.28) has no `import`: an empty container, the root copied into its
  # mounted file system, committed as the base image.
  scratch=$(buildah from scratch 2>"$work/import.log") ||
    { rm -rf "$work/rootfs"; skip "buildah cannot create a container here ($(tail -n 1 "$work/import.log"))"; }
  mnt=$(buildah mount "$scratch" 2>>"$work/import.log") ||
    { buildah rm "$scratch" >/dev/null 2>&1; rm -rf "$work/rootfs"
      skip "buildah cannot mount a container here ($(tail -n 1 "$work/import.log"))"; }
  tar -C "$work/rootfs" -c . | tar -C "$mnt" -x
  buildah umount "$scratch" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$scratch"
  if ! buildah commit --rm "$scratch" "$base" >>"$work/import.log" 2>&1; then
    buildah rm "$scratch" >/dev/null 2>&1 || true
    rm -rf "$work/rootfs"
    say "FAILED: the debootstrapped root could not be committed as $base:"
    tail -n 5 "$work/import.log"
    exit 1
  fi
  rm -rf "$work/rootfs"
  say "made $base from the debootstrapped root"
fi
probe=$(buildah from "$base" 2>/dev/null) || skip "buildah cannot create a container here"
if ! buildah run --isolation chroot "$probe" -- true >/dev/null 2>&1; then
  buildah rm "$probe" >/dev/null 2>&1 || true
  skip "a chroot container cannot run here"
fi
buildah rm "$probe" >/dev/null

say "building deploy/docker/Dockerfile on $base (CPU build; log: $work/build.log)"
start=$SECONDS
buildah bud --isolation chroot --layers -f deploy/docker/Dockerfile \
  --build-arg BUILD_BASE="$base" --build-arg RUN_BASE="$base" --build-arg WITH_CUDA=OFF \
  --build-arg VERSION=test -t localhost/dsv2-serve:test . >"$work/build.log" 2>&1 ||
  { tail -n 30 "$work/build.log"; say "FAILED: the image did not build"; exit 1; }
say "built localhost/dsv2-serve:test in $((SECONDS - start)) s"
buildah inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}' \
  localhost/dsv2-serve:test | sed 's/^/container_check: user, entrypoint: /'
echo

c=$(buildah from localhost/dsv2-serve:test)
cleanup() {
  [ -n "${server_pid:-}" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  buildah rm "$c" >/dev/null 2>&1 || true
}
trap cleanup EXIT
port=$((50300 + RANDOM % 500))
# The image's user (10001) and entrypoint program; the built-in demo model is in the image
# (/usr/local/share/dsv2-serve/demo-model), read-only like the rest of its root filesystem.
buildah run --isolation chroot --user 10001:10001 "$c" -- \
  /usr/local/bin/dsv2-coordinator --host 127.0.0.1 --port "$port" --http-port 0 \
  >"$work/coordinator.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  buildah run --isolation chroot "$c" -- /usr/local/bin/dsv2-cli --server "127.0.0.1:$port" \
    --timeout 2 health >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/coordinator.log"; say "FAILED: the coordinator exited"; exit 1; }
  sleep 1
done
say "inside the image: $(head -n 2 "$work/coordinator.log" | tail -n 1)"
buildah run --isolation chroot "$c" -- /usr/local/bin/dsv2-cli --server "127.0.0.1:$port" \
  generate "Hello from a container" --max-new-tokens 8 ||
  { say "FAILED: no completion from the coordinator in the image"; exit 1; }
echo
# SIGTERM to the coordinator itself (chroot isolation shares the PID namespace; buildah run
# would kill its child rather than forward the signal).
coord=$(pgrep -f "^/usr/local/bin/dsv2-coordinator --host 127.0.0.1 --port $port" | head -n 1)
[ -n "$coord" ] || { say "FAILED: the coordinator process is not found"; exit 1; }
kill -TERM "$coord"
wait "$server_pid" && code=0 || code=$?
server_pid=""
grep -q "dsv2-coordinator: stopped" "$work/coordinator.log" && [ "$code" = 0 ] ||
  { cat "$work/coordinator.log"; say "FAILED: the coordinator did not stop cleanly ($code)"; exit 1; }
say "$(grep -m1 'drained' "$work/coordinator.log")"
say "the coordinator in the image streamed a completion and exited 0 on SIGTERM"
