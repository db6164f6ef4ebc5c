#!/usr/bin/env python3
"""The prefix-caching example of issue 32, against one OpenAI-compatible server: a prompt of
FIRST token ids, then a second that shares its first SHARED tokens, one request at a time, each
a non-streamed completion of one token (its latency is the time to first token). Repeated with
fresh random prompts; prints one JSON line with the per-pair times in ms.
  serving_prefix_example.py URL MODEL [--first 905] [--shared 900] [--pairs 3] [--seed 1]
"""
import argparse
import json
import random
import time
import urllib.request


def complete(url, model, ids):
    body = json.dumps({"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        reply = json.load(r)
    ms = (time.perf_counter() - start) * 1000
    details = reply.get("usage", {}).get("prompt_tokens_details") or {}
    return ms, reply["usage"]["prompt_tokens"], details.get("cached_tokens")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("model")
    p.add_argument("--first", type=int, default=905)
    p.add_argument("--shared", type=int, default=900)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vocab", type=int, default=100000, help="ids drawn from [1000, vocab)")
    a = p.parse_args()
    rng = random.Random(a.seed)
    out = {"first_ms": [], "second_ms": [], "prompt_tokens": [], "cached_tokens": []}
    for _ in range(a.pairs):
        first = [rng.randrange(1000, a.vocab) for _ in range(a.first)]
        second = first[:a.shared] + [rng.randrange(1000, a.vocab) for _ in range(a.first - a.shared)]
        for key, ids in (("first_ms", first), ("second_ms", second)):
            ms, prompt_tokens, cached = complete(a.url, a.model, ids)
            out[key].append(round(ms, 1))
            if key == "second_ms":
                out["prompt_tokens"].append(prompt_tokens)
                out["cached_tokens"].append(cached)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
