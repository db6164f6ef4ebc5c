#!/usr/bin/env python3
"""The OpenAI-compatible HTTP API of dsv2-coordinator, through clients nobody here wrote:
the official `openai` package and `prometheus_client`'s parser. Starts the coordinator on the
built-in demo model (trained on Shakespeare, its own tokenizer) with gRPC and HTTP ports, then:

- /v1/models lists the served id; a chat completion and a completion, streamed and not, greedy:
  the streamed text equals the whole one and the same request over gRPC (dsv2-cli);
- usage in the last streamed chunk (stream_options.include_usage), logprobs in both formats;
- typed errors: NotFoundError for another model, BadRequestError naming the parameter;
- /metrics parses and its counters move as requests finish; /health is 200;
- prefix caching: a repeated long prompt reports usage.prompt_tokens_details.cached_tokens and
  gives the same text; another cache_salt reuses nothing; dsv2_prefix_cache_* move;
- 32 concurrent streams give the same texts as one at a time;
- malformed bodies (truncated JSON, wrong types, huge numbers, invalid UTF-8, a 10 MB body, a
  stalled header) get 4xx or a closed connection, and the server keeps serving.
Prints a transcript; exits 0 when every check holds.
"""
import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics(base):
    _, text = http("GET", base + "/metrics")
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def grpc_text(cli, grpc_addr, args):
    r = subprocess.run([cli, "--server", grpc_addr] + args, capture_output=True, timeout=120)
    return r.stdout.decode("utf-8", "replace").rstrip("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dsv2-openai-")
    grpc_port, http_port = free_port(), free_port()
    log = open(os.path.join(tmp, "server.log"), "wb")
    server = subprocess.Popen(
        [os.path.join(a.bin_dir, "dsv2-coordinator"), "--host", "127.0.0.1", "--port",
         str(grpc_port), "--http-port", str(http_port), "--max-running", "48", "--served-model-name", "dsv2-demo"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    cli = os.path.join(a.bin_dir, "dsv2-cli")
    grpc_addr = f"127.0.0.1:{grpc_port}"
    try:
        for _ in range(240):
            try:
                if http("GET", base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                raise SystemExit("the server exited: " + open(log.name).read())
            time.sleep(0.25)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        print(f"server: gRPC {grpc_addr}, HTTP {base}; openai {openai.__version__}")

        models = [m.id for m in client.models.list()]
        check(models == ["dsv2-demo"], f"/v1/models lists {models}")

        before = metrics(base)
        # Chat, greedy: streamed == whole == gRPC.
        msgs = [{"role": "user", "content": "Name three colours."}]
        whole = client.chat.completions.create(model="dsv2-demo", messages=msgs, max_tokens=24,
                                               temperature=0)
        chunks = list(client.chat.completions.create(
            model="dsv2-demo", messages=msgs, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True}))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        via_grpc = grpc_text(cli, grpc_addr, ["chat", "Name three colours.", "--max-new-tokens",
                                              "24", "--temperature", "0"])
        print(f"chat: {whole.choices[0].message.content!r}")
        check(streamed == whole.choices[0].message.content, "chat: streamed text == whole text")
        check(whole.choices[0].message.content == via_grpc, "chat: HTTP text == gRPC text")
        check(whole.choices[0].finish_reason in ("length", "stop"), "chat: finish_reason")
        usage = chunks[-1].usage
        check(usage is not None and usage.completion_tokens == whole.usage.completion_tokens and
              chunks[-1].choices == [], "chat: usage in the last streamed chunk")
        check(chunks[0].choices[0].delta.role == "assistant", "chat: first delta has the role")

        # Completion, greedy, with logprobs: streamed == whole == gRPC.
        whole = client.completions.create(model="dsv2-demo", prompt="The capital of France is",
                                          max_tokens=16, temperature=0, logprobs=3)
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model="dsv2-demo", prompt="The capital of France is", max_tokens=16, temperature=0,
            stream=True))
        via_grpc = grpc_text(cli, grpc_addr, ["generate", "The capital of France is",
                                              "--max-new-tokens", "16", "--temperature", "0"])
        print(f"completion: {whole.choices[0].text!r}")
        check(streamed == whole.choices[0].text, "completion: streamed text == whole text")
        check(whole.choices[0].text == via_grpc, "completion: HTTP text == gRPC text")
        lp = whole.choices[0].logprobs
        check(lp is not None and len(lp.token_logprobs) == whole.usage.completion_tokens and
              all(len(t) <= 3 for t in lp.top_logprobs) and all(x <= 0 for x in lp.token_logprobs),
              "completion: logprobs (tokens, token_logprobs <= 0, top 3)")
        chat_lp = client.chat.completions.create(model="dsv2-demo", messages=msgs, max_tokens=4,
                                                 temperature=0, logprobs=True, top_logprobs=2)
        content = chat_lp.choices[0].logprobs.content
        check(len(content) == 4 and all(len(c.top_logprobs) == 2 for c in content) and
              content[0].logprob == content[0].top_logprobs[0].logprob,
              "chat: logprobs.content with top 2 (greedy: chosen == best)")

        # Prefix caching: the repeat of a long prompt takes its full pages from the cache.
        long_prompt = " ".join(["To be, or not to be, that is the question:"] * 24)
        hits_before = metrics(base).get(("dsv2_prefix_cache_hits_total", ()), 0)
        first = client.completions.create(model="dsv2-demo", prompt=long_prompt, max_tokens=8,
                                          temperature=0, extra_body={"cache_salt": "t1"})
        again = client.completions.create(model="dsv2-demo", prompt=long_prompt, max_tokens=8,
                                          temperature=0, extra_body={"cache_salt": "t1"})
        other = client.completions.create(model="dsv2-demo", prompt=long_prompt, max_tokens=8,
                                          temperature=0, extra_body={"cache_salt": "t2"})
        cached = [r.usage.prompt_tokens_details.cached_tokens for r in (first, again, other)]
        print(f"prefix cache: {first.usage.prompt_tokens} prompt tokens, cached {cached}")
        check(cached[0] == 0 and cached[1] >= 64 and cached[1] < first.usage.prompt_tokens and
              cached[2] == 0, "prefix cache: cached_tokens 0, then the full pages, 0 for "
              "another cache_salt")
        check(again.choices[0].text == first.choices[0].text, "prefix cache: same text")
        hits = metrics(base).get(("dsv2_prefix_cache_hits_total", ()), 0) - hits_before
        check(hits == cached[1], f"/metrics: dsv2_prefix_cache_hits_total moved by {hits}")

        # Typed errors.
        try:
            client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
            check(False, "another model: NotFoundError")
        except openai.NotFoundError as e:
            check(e.status_code == 404, f"another model: NotFoundError ({e.message[:60]}...)")
        try:
            client.completions.create(model="dsv2-demo", prompt="x", temperature=7)
            check(False, "temperature 7: BadRequestError")
        except openai.BadRequestError as e:
            check(e.body.get("param") == "temperature", f"temperature 7: BadRequestError naming "
                  f"param={e.body.get('param')}")
        try:
            client.chat.completions.create(model="dsv2-demo", messages=msgs, n=2)
            check(False, "n=2: BadRequestError")
        except openai.BadRequestError as e:
            check(e.body.get("param") == "n", "n=2: BadRequestError naming n")

        # Metrics parse and move.
        after = metrics(base)
        key = ("dsv2_requests_total", (("outcome", "finished"),))
        check(after.get(key, 0) - before.get(key, 0) >= 5,
              f"/metrics: dsv2_requests_total{{outcome=finished}} {before.get(key)} -> "
              f"{after.get(key)}")
        check(("dsv2_cache_pages_total", ()) in after, "/metrics: dsv2_cache_pages_total")
        ttft = after.get(("dsv2_time_to_first_token_seconds_count", ()), 0)
        gen = after.get(("dsv2_generation_tokens_total", ()), 0) - before.get(
            ("dsv2_generation_tokens_total", ()), 0)
        check(ttft >= 7 and gen >= 24 + 24 + 16 + 16 + 4, f"/metrics: TTFT histogram count {ttft},"
              f" {gen} generation tokens")

        # A client that goes away mid-stream cancels its sequence.
        cancelled = ("dsv2_requests_total", (("outcome", "cancelled"),))
        was = metrics(base).get(cancelled, 0)
        stream = client.completions.create(model="dsv2-demo", prompt="A long story", stream=True,
                                           max_tokens=3000, temperature=0)
        next(iter(stream))
        stream.close()
        for _ in range(100):
            if metrics(base).get(cancelled, 0) > was:
                break
            time.sleep(0.05)
        now = metrics(base)
        check(now.get(cancelled, 0) == was + 1 and now.get(("dsv2_running_sequences", ()), 1) == 0,
              "a client gone mid-stream: its sequence is cancelled")
        check(http("GET", base + "/health")[0] == 200, "/health: 200")

        # 32 concurrent streams == one at a time.
        prompts = [f"Story {i}: once upon a time" for i in range(32)]

        def run(p):
            return "".join(c.choices[0].text for c in client.completions.create(
                model="dsv2-demo", prompt=p, max_tokens=12, temperature=0, stream=True))
        alone = [run(p) for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            together = list(pool.map(run, prompts))
        check(alone == together, "32 concurrent streams == the same one at a time")

        # Malformed bodies: 4xx, and the server goes on.
        url = base + "/v1/completions"
        cases = {
            "truncated JSON": b'{"model": "dsv2-demo", "prompt": "a',
            "not an object": b'[1, 2, 3]',
            "wrong type": b'{"model": "dsv2-demo", "prompt": {"a": 1}}',
            "huge number": b'{"model": "dsv2-demo", "prompt": "a", "max_tokens": 1e400}',
            "huge integer": b'{"model": "dsv2-demo", "prompt": "a", "max_tokens": 99999999999999999999999}',
            "invalid UTF-8": b'{"model": "dsv2-demo", "prompt": "\xff\xfe"}',
            "token id out of range": b'{"model": "dsv2-demo", "prompt": [1, 99999999]}',
            "10 MB body": b'{"model": "dsv2-demo", "prompt": "' + b"a" * (10 << 20) + b'"}',
        }
        for name, body in cases.items():
            try:
                status, _ = http("POST", url, body, {"Content-Type": "application/json"})
            except OSError as e:  # a connection closed on an oversized body is acceptable too
                status = f"closed ({e.__class__.__name__})"
            ok = isinstance(status, str) or 400 <= status < 500
            check(ok, f"malformed: {name} -> {status}")
        # A stalled header (slowloris) does not block other clients.
        stalled = socket.create_connection(("127.0.0.1", http_port))
        stalled.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        status, _ = http("GET", base + "/v1/models")
        check(status == 200, "a stalled header does not block other requests")
        stalled.close()
        check(server.poll() is None and http("GET", base + "/health")[0] == 200,
              "the server still serves after the malformed corpus")
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"{len(failures)} failed" if failures else "all OpenAI API checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
