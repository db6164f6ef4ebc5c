#!/usr/bin/env bash
# TLS on the gRPC and HTTP APIs: a throwaway CA signs a server and a client certificate
# (openssl); then
#   - dsv2-coordinator --tls-cert/--tls-key: dsv2-cli --tls-ca streams a completion; a plaintext
#     client and a client that trusts another CA are refused; the HTTP API answers over HTTPS
#     (Python's ssl with the CA) and refuses plaintext HTTP;
#   - with --tls-client-ca (mutual TLS): a client with the CA-signed certificate is served, one
#     without a certificate is refused, on both APIs;
#   - the control plane of expert parallelism: a worker with --tls-cert/--tls-key/--tls-client-ca
#     serves a coordinator with --worker-tls-ca/--worker-tls-cert/--worker-tls-key (a completion
#     through the group), and a coordinator without them cannot configure it;
#   - misuse is refused at start-up, naming the flag: a key that is not the certificate's,
#     --tls-cert without --tls-key, a certificate file that cannot be read.
# Usage: tests/e2e/tls_test.sh BUILD_DIR     (exit 77: no openssl)
set -euo pipefail
bin="$(cd "$1" && pwd)/bin"
src="$(cd "$(dirname "$0")/../.." && pwd)"
command -v openssl >/dev/null || { echo "SKIPPED: openssl not found"; exit 77; }
work="$(mktemp -d /tmp/dsv2-tls.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "tls_test: $*"; }
fail() { say "FAILED: $*"; for f in "$work"/*.log; do echo "--- $f"; tail -5 "$f"; done; exit 1; }

cd "$work"
mk_ca() {  # $1: name
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" -keyout "$1.key" -out "$1.pem" \
    2>/dev/null
}
mk_cert() {  # $1: name, $2: CA, $3: extensions
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
mk_ca ca
mk_ca other-ca
mk_cert server ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
mk_cert client ca "extendedKeyUsage=clientAuth"
say "made a CA, a server certificate (127.0.0.1) and a client certificate"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {  # $1: log name; the rest: flags
  local log="$1"; shift
  p=$(port)
  hp=$(port)
  "$bin/dsv2-coordinator" --host 127.0.0.1 --port "$p" --http-port "$hp" --threads 1 "$@" \
    >"$log.log" 2>&1 &
  pids+=($!)
}
# https METHOD PATH [client-cert-name]: prints the HTTP status, or "refused: <why>".
https() {
  python3 - "$hp" "$1" "$2" "${3:-}" <<'PY'
import http.client, ssl, sys
port, method, path, cert = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile="ca.pem")
if cert:
    ctx.load_cert_chain(cert + ".pem", cert + ".key")
body = '{"model": "demo-model", "prompt": "ROMEO.", "max_tokens": 4}' if method == "POST" else None
try:
    c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=20)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    print(r.status)
except Exception as e:
    print("refused:", type(e).__name__)
PY
}
plain_http() {  # a plaintext request to the HTTPS port: prints the status or "refused"
  python3 - "$hp" <<'PY'
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
    c.request("GET", "/v1/models")
    print(c.getresponse().status)
except Exception as e:
    print("refused:", type(e).__name__)
PY
}
cli() { "$bin/dsv2-cli" --server "127.0.0.1:$p" --timeout 10 "$@"; }
wait_up() {  # $@: cli TLS flags that work
  for _ in $(seq 1 100); do
    cli "$@" health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "the server did not answer over TLS"
}

start tls --tls-cert server.pem --tls-key server.key
wait_up --tls-ca ca.pem
grep -q "gRPC API over TLS on 127.0.0.1:$p (server certificate only)" tls.log ||
  fail "the start-up line does not say TLS"
out=$(cli --tls-ca ca.pem generate "ROMEO." --max-new-tokens 8 2>/dev/null) || fail "generate over TLS"
say "TLS: streamed \"${out//$'\n'/\\n}\""
cli health >/dev/null 2>&1 && fail "a plaintext client was served by a TLS server"
cli --tls-ca other-ca.pem health >/dev/null 2>&1 && fail "a client trusting another CA was served"
say "TLS: a plaintext client and a client trusting another CA are refused"
grep -q "HTTP API over TLS (HTTPS) on 127.0.0.1:$hp" tls.log || fail "the HTTP line does not say TLS"
[ "$(https GET /v1/models)" = 200 ] || fail "GET /v1/models over HTTPS: $(https GET /v1/models)"
[ "$(https POST /v1/completions)" = 200 ] || fail "POST /v1/completions over HTTPS"
case "$(plain_http)" in refused*) ;; *) fail "plaintext HTTP was answered on the HTTPS port" ;; esac
say "HTTPS: /v1/models and /v1/completions answer 200; plaintext HTTP is refused"

start mtls --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem
wait_up --tls-ca ca.pem --tls-cert client.pem --tls-key client.key
grep -q "mutual" mtls.log || fail "the start-up line does not say mutual TLS"
cli --tls-ca ca.pem --tls-cert client.pem --tls-key client.key generate "KING." --max-new-tokens 4 \
  >/dev/null 2>&1 || fail "generate with a client certificate"
cli --tls-ca ca.pem health >/dev/null 2>&1 && fail "a client without a certificate was served (mTLS)"
say "mutual TLS: the CA-signed client is served, a client without a certificate is refused"
grep -q "HTTP API over mutual TLS (HTTPS)" mtls.log || fail "the HTTP line does not say mutual TLS"
[ "$(https POST /v1/completions client)" = 200 ] || fail "HTTPS with a client certificate"
case "$(https GET /v1/models)" in refused*) ;; *) fail "HTTPS without a client certificate was served (mTLS)" ;; esac
say "mutual TLS over HTTPS: the CA-signed client gets 200, a client without a certificate is refused"

# Expert parallelism with TLS on the workers' control port (mutual).
model="$src/assets/demo-model"
wp=$(port); wd=$(port)
"$bin/dsv2-worker" --model "$model" --rank 1 --host 127.0.0.1 --port "$wp" --data-port "$wd" \
  --threads 1 --device cpu --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem \
  >worker.log 2>&1 &
pids+=($!)
start ep --workers "127.0.0.1:$wp" --device cpu --worker-tls-ca ca.pem \
  --worker-tls-cert client.pem --worker-tls-key client.key
for _ in $(seq 1 150); do cli health >/dev/null 2>&1 && break; sleep 0.2; done
cli health >/dev/null 2>&1 || fail "the expert-parallel group with worker TLS did not serve"
cli generate "KING." --max-new-tokens 4 >/dev/null 2>&1 || fail "generate through the TLS group"
grep -q "control port over mutual TLS" worker.log || fail "the worker does not say mutual TLS"
start ep_plain --workers "127.0.0.1:$wp" --device cpu
sleep 3
cli health >/dev/null 2>&1 && fail "a coordinator without worker TLS configured the worker"
say "worker control plane over mutual TLS: served; a plaintext coordinator cannot configure it"

expect_refusal() {  # $1: what the message must say; the rest: flags
  local want="$1"; shift
  set +e
  "$bin/dsv2-coordinator" --host 127.0.0.1 --port 0 --threads 1 "$@" >refusal.log 2>&1
  local code=$?
  set -e
  [ "$code" -ne 0 ] && grep -q -- "$want" refusal.log || fail "expected a refusal saying '$want'"
  say "refused: $(tail -n 1 refusal.log)"
}
expect_refusal "check that --tls-key is the key of --tls-cert" --http-port 0 --tls-cert server.pem --tls-key client.key
expect_refusal "--tls-cert and --tls-key go together" --http-port 0 --tls-cert server.pem
expect_refusal "cannot read" --http-port 0 --tls-cert missing.pem --tls-key server.key
expect_refusal "--worker-tls-cert needs --worker-tls-ca" --http-port 0 --workers 127.0.0.1:1 \
  --device cpu --worker-tls-cert client.pem --worker-tls-key client.key
say "OK"
