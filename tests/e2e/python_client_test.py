#!/usr/bin/env python3
"""End-to-end test of dsv2-coordinator from Python, through the public proto files only.

Generates Python stubs for proto/dsv2/v1/inference.proto and grpc/health/v1/health.proto into a
temporary directory, starts dsv2-coordinator on a free loopback port with its built-in demo
model, and checks Health, GetModelInfo, Tokenize,
streaming Generate (text, token ids, chat, stop strings, cancellation) and INVALID_ARGUMENT
errors. Stops the server with SIGTERM and expects a clean exit.

    /usr/bin/python3 tests/e2e/python_client_test.py --server-bin build/bin/dsv2-coordinator

Needs grpcio and protobuf (Debian: python3-grpcio python3-protobuf) and a stub generator:
protoc with grpc_python_plugin (Debian: protobuf-compiler protobuf-compiler-grpc), or
grpcio-tools. Exits 77 (a ctest skip) only when these are missing; 1 on any failure.
"""

import argparse
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import python_client_checks as checks  # beside this file; plain Python, no grpc
from python_client_checks import Failure, check, log

SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(msg):
    log(f"SKIPPED: {msg}")
    sys.exit(SKIP)


# --- Stubs -----------------------------------------------------------------------------------


def generate_stubs(proto_dir, out_dir, protoc, plugin):
    """Writes dsv2/v1/inference_pb2*.py and dsv2_health/v1/health_pb2*.py under out_dir.

    health.proto is compiled from a copy under dsv2_health/ so that its module does not land in
    a `grpc` package, which would be shadowed by grpcio's own `grpc` package.
    """
    src = os.path.join(out_dir, "protos")
    os.makedirs(os.path.join(src, "dsv2", "v1"))
    os.makedirs(os.path.join(src, "dsv2_health", "v1"))
    shutil.copy(os.path.join(proto_dir, "dsv2", "v1", "inference.proto"),
                os.path.join(src, "dsv2", "v1"))
    shutil.copy(os.path.join(proto_dir, "grpc", "health", "v1", "health.proto"),
                os.path.join(src, "dsv2_health", "v1"))
    files = ["dsv2/v1/inference.proto", "dsv2_health/v1/health.proto"]
    outs = [f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", f"-I{src}"]
    attempts = []
    if protoc and plugin:
        attempts.append((f"{protoc} + {plugin}",
                         [protoc, f"--plugin=protoc-gen-grpc_python={plugin}"] + outs + files))
    try:
        importlib.import_module("grpc_tools.protoc")
        attempts.append(("grpc_tools.protoc", [sys.executable, "-m", "grpc_tools.protoc"] +
                         outs + files))
    except ImportError:
        pass
    if not attempts:
        skip("no stub generator: install protobuf-compiler and protobuf-compiler-grpc "
             "(protoc, grpc_python_plugin) or grpcio-tools")
    errors = []
    for name, cmd in attempts:
        r = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
        if r.returncode == 0:
            log(f"stubs: generated with {name}")
            return
        errors.append(f"{name} failed ({r.returncode}):\n{r.stderr.strip()}")
    raise Failure("cannot generate the Python stubs:\n" + "\n".join(errors))


# --- The server ------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.log_path = os.path.join(tmp, "server.log")
        self.proc = None
        self.port = None

    def start(self, health_pb2, health_grpc, grpc, timeout_s=120):
        for attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            cmd = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--http-port", "0"]
            log(f"server: {' '.join(cmd)}")
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            start = time.monotonic()
            while time.monotonic() < start + timeout_s and self.proc.poll() is None:
                # A fresh channel per probe: a failed connect puts a channel into reconnect
                # backoff (1 s and growing), which would delay noticing the server is up.
                with grpc.insecure_channel(self.address()) as probe:
                    try:
                        r = health_grpc.HealthStub(probe).Check(
                            health_pb2.HealthCheckRequest(service=""), timeout=1)
                        if r.status == health_pb2.HealthCheckResponse.SERVING:
                            log(f"server: SERVING on {self.address()} after "
                                f"{time.monotonic() - start:.1f} s")
                            return grpc.insecure_channel(self.address())
                    except grpc.RpcError:
                        pass
                time.sleep(0.1)
            if self.proc.poll() is None:
                raise Failure(f"the server did not become healthy within {timeout_s} s")
            if "cannot listen" not in self.log_tail() or attempt == 2:
                raise Failure(f"the server exited with code {self.proc.returncode} at start-up")
        raise Failure("unreachable")

    def address(self):
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout_s=30):
        """SIGTERM; returns the exit code, or None if it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"


# --- Main ------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server-bin", default=os.path.join(REPO, "build", "bin", "dsv2-coordinator"))
    ap.add_argument("--proto-dir", default=os.path.join(REPO, "proto"))
    ap.add_argument("--protoc", default=shutil.which("protoc"))
    ap.add_argument("--grpc-python-plugin", default=shutil.which("grpc_python_plugin"))
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    log(f"python: {sys.executable} {sys.version.split()[0]}")
    try:
        import grpc
        import google.protobuf
    except ImportError as e:
        skip(f"{e}: {sys.executable} lacks grpcio/protobuf "
             "(Debian: apt-get install python3-grpcio python3-protobuf; scripts/install-deps.sh)")
    log(f"grpcio {grpc.__version__}, protobuf {google.protobuf.__version__}")
    if not os.access(args.server_bin, os.X_OK):
        raise Failure(f"no server binary at {args.server_bin} (build dsv2-coordinator)")

    tmp = tempfile.mkdtemp(prefix="dsv2-pyclient-")
    server = Server(args.server_bin, tmp)
    ok = False
    try:
        generate_stubs(args.proto_dir, tmp, args.protoc, args.grpc_python_plugin)
        sys.path.insert(0, tmp)
        from dsv2.v1 import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
        from dsv2_health.v1 import health_pb2, health_pb2_grpc
        channel = server.start(health_pb2, health_pb2_grpc, grpc)
        checks.run_all(checks.Api(grpc, pb, pb_grpc, health_pb2, health_pb2_grpc, channel))
        channel.close()
        code = server.stop()
        check(code == 0, f"the server did not stop cleanly on SIGTERM (exit code {code}, "
                         "None = killed after 30 s)")
        log("PASS: the server stopped cleanly on SIGTERM")
        ok = True
    except Failure as e:
        log(f"FAILED: {e}")
    except Exception:  # a bug or an unexpected RPC error: as loud as a failed check
        log("FAILED with an exception:\n" + traceback.format_exc())
    finally:
        server.stop()
        if not ok:
            log(f"--- server log ({server.log_path}), last lines ---\n{server.log_tail()}")
        if args.keep_tmp or not ok:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    log("ServerPythonClient: " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        log(f"FAILED: {e}")
        sys.exit(1)
