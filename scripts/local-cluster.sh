#!/usr/bin/env bash
# A rehearsal of deploy/k8s/expert-parallel on one machine, without Kubernetes: each "pod" runs
# in its own network namespace (veth into a bridge that lives in a namespace of its own, an IP
# and a hostname per pod, /etc/hosts entries for the pod DNS names LeaderWorkerSet gives), and
# the coordinator and 2 workers run with exactly the command, arguments and environment of the
# rendered manifests (kubectl kustomize; the group size set to 3, the LWS_* variables the
# controller would inject, /models mapped to the built-in demo model). It then:
#   waits for SERVING through grpc.health.v1, streams a completion with dsv2-cli,
#   SIGKILLs worker 2 (requests UNAVAILABLE, health NOT_SERVING), restarts it (SERVING again,
#   a completion again), sends SIGTERM to every pod and checks the drain and exit codes 0.
# Everything (processes, namespaces, links, /etc/netns entries) is torn down on exit, failure
# included. All traffic stays inside the namespaces it creates.
#   scripts/local-cluster.sh            # needs root, iproute2, kubectl, python3-yaml, a build
# Exit 77 when network namespaces cannot be created here (the caller counts it as skipped).
# DSV2_BIN_DIR (default build/bin) names the programs.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
bin="$(cd "${DSV2_BIN_DIR:-build/bin}" && pwd)"
t0=$SECONDS
say() { printf '[local-cluster %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
skip() { echo "local-cluster: SKIPPED: $*"; exit 77; }
fail() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
for tool in ip unshare kubectl python3; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
python3 -c "import yaml" 2>/dev/null || skip "python3-yaml is not installed"
for b in dsv2-coordinator dsv2-worker dsv2-cli; do
  [ -x "$bin/$b" ] || fail "$bin/$b is not built"
done

p="dlc$((RANDOM % 9000 + 1000))"  # prefix of namespaces and links (<= 15-char link names)
work="$(mktemp -d /tmp/dsv2-local-cluster.XXXXXX)"
pods=(leader w1 w2 client)
declare -A ip=([leader]=10.213.7.10 [w1]=10.213.7.11 [w2]=10.213.7.12 [client]=10.213.7.20)
declare -A pid=()
cleanup() {
  local code=$?
  for name in "${!pid[@]}"; do kill -KILL "${pid[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${pods[@]}" sw; do
    ip netns del "$p-$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$p-$ns"
  done
  if [ "$code" != 0 ] && [ "$code" != 77 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- The pods as the manifests describe them ----------------------------------------------
kubectl kustomize deploy/k8s/expert-parallel >"$work/rendered.yaml" 2>/dev/null
# The Secret the manifests read DSV2_CLUSTER_SECRET from, as `kubectl create secret` would make it.
cluster_secret="$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
python3 - "$work/rendered.yaml" "$work/models" "$cluster_secret" >"$work/pods.sh" <<'EOF'
import shlex, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
lws = next(d for d in docs if d["kind"] == "LeaderWorkerSet")
t = lws["spec"]["leaderWorkerTemplate"]
def emit(role, tmpl):
    c = tmpl["spec"]["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    cmd = c.get("command") or ["/usr/local/bin/dsv2-coordinator"]  # the image's ENTRYPOINT
    # Volumes: the model claim is the local checkpoint directory.
    args = [a.replace("/models", sys.argv[2]) if "/models" in mounts and "/models" in a else a
            for a in c.get("args", [])]
    env = [f"{e['name']}={e['value']}" for e in c.get("env", []) if "value" in e]
    env += [f"{e['name']}={sys.argv[3]}" for e in c.get("env", [])
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "dsv2-cluster-secret"]
    ports = [pt["containerPort"] for pt in c.get("ports", [])]
    print(f"{role}_cmd=({' '.join(shlex.quote(x) for x in cmd + args)})")
    print(f"{role}_env=({' '.join(shlex.quote(x) for x in env)})")
    print(f"{role}_port={ports[0]}")
    print(f"{role}_grace={tmpl['spec'].get('terminationGracePeriodSeconds', 30)}")
emit("leader", t["leaderTemplate"])
emit("worker", t["workerTemplate"])
print(f"lws_name={lws['metadata']['name']}")
print(f"manifest_size={t['size']}")
EOF
# shellcheck source=/dev/null
source "$work/pods.sh"
group_size=3  # the rehearsal's group: the coordinator and 2 workers (the manifest has $manifest_size)
say "rendered deploy/k8s/expert-parallel: LeaderWorkerSet $lws_name (size $manifest_size, rehearsed with $group_size)"
say "leader: ${leader_cmd[*]##*/}"
say "worker: ${worker_cmd[*]##*/}"

# The model claim: the built-in demo model (a small trained DeepSeek-V2, 16 routed experts, with
# its tokenizer) under the name the manifest mounts.
mkdir -p "$work/models/DeepSeek-V2-Lite-Chat"
cp assets/demo-model/config.json assets/demo-model/model.safetensors assets/demo-model/tokenizer.json \
  assets/demo-model/tokenizer_config.json "$work/models/DeepSeek-V2-Lite-Chat/"

# --- The network: a bridge in its own namespace, one namespace per pod ----------------------
domain="$lws_name.default.svc.cluster.local"
declare -A host=([leader]="$lws_name-0" [w1]="$lws_name-0-1" [w2]="$lws_name-0-2" [client]=client)
ip netns add "$p-sw" 2>/dev/null || skip "cannot create network namespaces here"
ip netns exec "$p-sw" ip link add br0 type bridge
ip netns exec "$p-sw" ip link set br0 up
hosts_file="$work/hosts"
{
  echo "127.0.0.1 localhost"
  for n in leader w1 w2 client; do echo "${ip[$n]} ${host[$n]}.$domain ${host[$n]}"; done
} >"$hosts_file"
i=0
for n in "${pods[@]}"; do
  ns="$p-$n"
  i=$((i + 1))
  ip netns add "$ns"
  mkdir -p "/etc/netns/$ns" && cp "$hosts_file" "/etc/netns/$ns/hosts"  # ip netns exec binds it
  ip link add "$p${i}a" type veth peer name "$p${i}b"
  ip link set "$p${i}a" netns "$ns"
  ip link set "$p${i}b" netns "$p-sw"
  ip netns exec "$p-sw" ip link set "$p${i}b" master br0 up
  ip netns exec "$ns" ip link set "$p${i}a" name eth0
  ip netns exec "$ns" ip addr add "${ip[$n]}/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip link set lo up
done
say "namespaces up: ${pods[*]} on 10.213.7.0/24 (bridge in $p-sw)"

lws_env=("LWS_NAME=$lws_name" "LWS_GROUP_SIZE=$group_size"
  "LWS_LEADER_ADDRESS=${host[leader]}.$domain")
start_pod() {  # start_pod NAME WORKER_INDEX
  local n="$1" index="$2"
  local -a cmd env
  if [ "$n" = leader ]; then cmd=("${leader_cmd[@]}"); env=("${leader_env[@]}"); else
    cmd=("${worker_cmd[@]}"); env=("${worker_env[@]}"); fi
  cmd[0]="$bin/$(basename "${cmd[0]}")"
  ip netns exec "$p-$n" unshare --uts sh -c 'hostname "$1"; shift; exec env "$@"' sh \
    "${host[$n]}" "${env[@]}" "${lws_env[@]}" "LWS_WORKER_INDEX=$index" "${cmd[@]}" \
    >>"$work/$n.log" 2>&1 &
  pid[$n]=$!
}
cli() { ip netns exec "$p-client" "$bin/dsv2-cli" --server "${host[leader]}.$domain:$leader_port" "$@"; }
wait_health() {  # wait_health WANT SECONDS
  local want="$1" limit="$2" start=$SECONDS
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    if [ "$want" = SERVING ] && cli --timeout 2 health >/dev/null 2>&1; then return 0; fi
    if [ "$want" = NOT_SERVING ] && ! cli --timeout 2 health >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

# --- The rehearsal --------------------------------------------------------------------------
start_pod w1 1
start_pod w2 2
start_pod leader 0
wait_health SERVING 120 || fail "the group did not become SERVING within 120 s"
say "SERVING: ${host[leader]} with workers ${host[w1]}, ${host[w2]}"
# The Secret reached every pod: nobody warns that the cluster runs unauthenticated.
! grep -h "WARNING: no cluster secret" "$work"/leader.log "$work"/w1.log "$work"/w2.log ||
  fail "a pod runs without the cluster secret"
say "every pod holds the cluster secret (DSV2_CLUSTER_SECRET from the Secret dsv2-cluster-secret)"
cli info | sed -n '/^expert/,$p' | sed 's/^/    /'
say "streaming a completion through dsv2-cli from the client namespace:"
cli generate $'ROMEO.\nBut soft, what light' --max-new-tokens 12 | sed 's/^/    /' ||
  fail "the completion failed"
echo

http_port=$(printf '%s\n' "${leader_cmd[@]}" | sed -n 's/^--http-port=//p')
if [ -n "$http_port" ]; then
  metrics=$(ip netns exec "$p-client" python3 -c "import urllib.request, sys
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())" \
    "http://${host[leader]}.$domain:$http_port/metrics")
  grep -q 'dsv2_expert_exchange_bytes_total{worker="2",direction="sent"}' <<<"$metrics" ||
    fail "/metrics has no per-worker exchange counters"
  say "HTTP /metrics (port $http_port) from the client namespace:"
  grep -E '^dsv2_expert_(exchange|workers)' <<<"$metrics" | sed 's/^/    /'
fi
say "SIGKILL worker 2 (${host[w2]})"
kill -KILL "${pid[w2]}"
wait "${pid[w2]}" 2>/dev/null || true
unset 'pid[w2]'
# The coordinator finds out at the next exchange with the worker: that request fails.
set +e
out="$(cli --timeout 30 generate "Hello" --max-new-tokens 4 2>&1)"
code=$?
set -e
{ [ "$code" != 0 ] && grep -q UNAVAILABLE <<<"$out"; } || fail "a request with a worker gone: $out"
say "a request answers: $(grep -m1 UNAVAILABLE <<<"$out")"
wait_health NOT_SERVING 20 || fail "health stayed SERVING after a worker was lost"
say "health: NOT_SERVING"
say "restarting worker 2 at the same address"
start_pod w2 2
wait_health SERVING 60 || fail "the group did not rejoin within 60 s"
say "SERVING again"
cli generate "Hello" --max-new-tokens 8 | sed 's/^/    /' || fail "the completion after the rejoin failed"
echo

say "SIGTERM to every pod (grace: leader ${leader_grace} s, workers ${worker_grace} s)"
for n in leader w1 w2; do kill -TERM "${pid[$n]}"; done
for n in leader w1 w2; do
  limit=$([ "$n" = leader ] && echo "$leader_grace" || echo "$worker_grace")
  start=$SECONDS
  while kill -0 "${pid[$n]}" 2>/dev/null && [ $((SECONDS - start)) -lt "$limit" ]; do sleep 0.2; done
  kill -0 "${pid[$n]}" 2>/dev/null && fail "$n did not exit within its grace period"
  set +e
  wait "${pid[$n]}"
  code=$?
  set -e
  unset "pid[$n]"
  [ "$code" = 0 ] || fail "$n exited with $code"
done
grep -q "draining" "$work/leader.log" || fail "the coordinator did not drain"
say "drained: $(grep -m1 'drained' "$work/leader.log" | sed 's/^dsv2-coordinator: //')"
say "all pods exited 0; tearing down"
