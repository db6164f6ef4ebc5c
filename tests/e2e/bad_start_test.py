#!/usr/bin/env python3
"""Every program against every class of bad start-up input (ctest BadStartSweep).

  bad_start_test.py --bin BUILD/bin --cases tests/e2e/bad_start_cases.tsv --data tests/data
                    --demo assets/demo-model [--only PROGRAM] [--table OUT.md]

Each row of the case table (tab-separated: program, case, arguments, expected) runs the program
with the arguments, placeholders filled from fixtures made here ({missing}, {empty},
{notjson}, ... below), and must end within 20 s, with an exit code in 1..125 (no signal, no
hang), exactly one line on stderr that matches the expected regular expression (it names the
flag, file or field), and none of: `terminate called`, a sanitizer report, a failed check.
A new flag gets a row. Prints the table of what each case printed; exits 1 if any case failed.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile

FORBIDDEN = re.compile(r"terminate called|AddressSanitizer|LeakSanitizer|runtime error:|"
                       r"Check failed|CHECK failed|Aborted|Segmentation fault|core dumped")


def make_fixtures(root, data, demo):
    """The bad inputs, built from the golden lite checkpoint and the demo model."""
    f = {}
    lite = os.path.join(data, "golden", "lite")
    f["lite"] = lite
    f["demo"] = demo
    f["missing"] = os.path.join(root, "does-not-exist")
    f["empty"] = os.path.join(root, "empty")
    os.makedirs(f["empty"])

    def checkpoint(name, src=lite):  # a copy without the reference outputs beside the weights
        d = os.path.join(root, name)
        shutil.copytree(src, d, ignore=shutil.ignore_patterns("reference.safetensors"))
        return d

    with open(os.path.join(lite, "config.json")) as fh:
        config = json.load(fh)
    f["notjson"] = checkpoint("notjson")
    with open(os.path.join(f["notjson"], "config.json"), "w") as fh:
        fh.write('{"hidden_size": 64, "num_hidden_layers": ')
    f["nofield"] = checkpoint("nofield")
    with open(os.path.join(f["nofield"], "config.json"), "w") as fh:
        json.dump({k: v for k, v in config.items() if k != "hidden_size"}, fh)
    f["wrongtype"] = checkpoint("wrongtype")
    with open(os.path.join(f["wrongtype"], "config.json"), "w") as fh:
        json.dump(dict(config, hidden_size="sixty-four"), fh)
    f["truncated"] = checkpoint("truncated")
    shard = os.path.join(f["truncated"], "model.safetensors")
    with open(shard, "r+b") as fh:
        fh.truncate(os.path.getsize(shard) // 2)
    # A sharded checkpoint whose index names a file that was renamed.
    f["renamed"] = checkpoint("renamed")
    with open(os.path.join(lite, "model.safetensors"), "rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    with open(os.path.join(f["renamed"], "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {}, "weight_map": {k: "model-00001-of-00001.safetensors"
                                                  for k in header if k != "__metadata__"}}, fh)
    os.rename(os.path.join(f["renamed"], "model.safetensors"),
              os.path.join(f["renamed"], "model-00001-of-00001.safetensors.bak"))
    f["badtok"] = checkpoint("badtok", demo)
    with open(os.path.join(f["badtok"], "tokenizer.json"), "w") as fh:
        fh.write('{"model": {"type": "BPE", "vocab": [1, 2')
    f["nofile"] = os.path.join(root, "no-such-file.pem")
    f["emptyfile"] = os.path.join(root, "empty.pem")
    open(f["emptyfile"], "w").close()
    f["garbage"] = os.path.join(root, "garbage.pem")
    with open(f["garbage"], "w") as fh:
        fh.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    # Two throwaway self-signed pairs: a certificate with the other pair's key (rows that need
    # them are skipped, saying so, where the openssl program is not installed).
    for name in ("a", "b") if shutil.which("openssl") else ():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", os.path.join(root, name + ".key"),
                        "-out", os.path.join(root, name + ".pem")], check=True,
                       capture_output=True)
    if shutil.which("openssl"):
        f["cert"] = os.path.join(root, "a.pem")
        f["otherkey"] = os.path.join(root, "b.key")
    f["shortsecret"] = os.path.join(root, "short-secret")
    with open(f["shortsecret"], "w") as fh:
        fh.write("tooshort")
    f["text"] = os.path.join(root, "text.txt")
    with open(f["text"], "w") as fh:
        fh.write("ROMEO. Hello.\n")
    f["out"] = os.path.join(root, "out")
    # A port held open for the whole sweep, and one that nothing listens on.
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    f["busy"] = str(busy.getsockname()[1])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    f["closed"] = str(closed.getsockname()[1])
    closed.close()
    return f, busy


def read_cases(path):
    cases = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 4:
                sys.exit(f"{path}:{n}: expected 4 tab-separated columns, got {len(cols)}")
            cases.append((n, *cols))
    return cases


def run_case(binary, args, env):
    try:
        p = subprocess.run([binary] + args, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=20, env=env)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after 20 s"
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--table", default="")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="dsv2-bad-start-")
    fixtures, busy = make_fixtures(root, a.data, a.demo)
    env = dict(os.environ)
    for k in ("DSV2_CLUSTER_SECRET", "DSV2_DEMO_MODEL", "DSV2_RANK", "LWS_WORKER_INDEX"):
        env.pop(k, None)
    rows, failed = [], 0
    for n, program, case, args, expect in read_cases(a.cases):
        if a.only and program != a.only:
            continue
        binary = os.path.join(a.bin, program)
        if not os.path.exists(binary):
            rows.append((program, case, "SKIPPED", f"{program} was not built"))
            continue
        try:
            argv = [x.format(**fixtures) for x in shlex.split(args)]
        except KeyError as e:
            rows.append((program, case, "SKIPPED", f"no fixture {e} (openssl not installed)"))
            print(f"bad_start: SKIPPED {program} [{case}]: no fixture {e}", flush=True)
            continue
        rc, _, err = run_case(binary, argv, env)
        lines = [line for line in err.splitlines() if line.strip()]
        problems = []
        if rc is None:
            problems.append("hung (20 s)")
        elif rc == 0:
            problems.append("exit 0")
        elif rc < 0 or rc > 125:
            problems.append(f"exit {rc} (a signal)")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if FORBIDDEN.search(err):
            problems.append("abort or sanitizer report")
        if lines and not re.search(expect, lines[-1]):
            problems.append(f"the line does not match /{expect}/")
        shown = lines[-1] if lines else "(nothing)"
        if problems:
            failed += 1
            shown = "; ".join(problems) + ": " + " / ".join(lines[:4])[:400]
        rows.append((program, case, "ok" if not problems else "FAIL", shown))
        print(f"bad_start: {'ok  ' if not problems else 'FAIL'} {program} [{case}] rc={rc}: "
              f"{shown}", flush=True)
    busy.close()
    shutil.rmtree(root, ignore_errors=True)
    table = ["| program | case | verdict | what it printed |", "|---|---|---|---|"]
    for r in rows:
        table.append("| " + " | ".join(x.replace("|", "/") for x in r) + " |")
    if a.table:
        with open(a.table, "w") as fh:
            fh.write("\n".join(table) + "\n")
    ok = sum(1 for r in rows if r[2] == "ok")
    print(f"bad_start: {ok} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
