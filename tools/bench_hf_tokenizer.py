#!/usr/bin/env python3
"""HF tokenizers' encode throughput on one thread, for bench/tokenizer_compare.sh.

usage: bench_hf_tokenizer.py TOKENIZER_DIR TEXT_FILE RUNS MODES
Prints rows in the format of tokenizer_bench ("hf    MODE  X MB/s  N tokens  T ms").
"""
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer  # noqa: E402


def main():
    tok_dir, text_file, runs, modes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    text = open(text_file, encoding="utf-8", newline="").read()
    size = len(text.encode("utf-8"))
    for mode in modes.split(","):
        inputs = [text] if mode == "whole" else text.split("\n")
        times = []
        tokens = 0
        for r in range(-1, runs):  # -1: warm-up (fills HF's BPE cache)
            t0 = time.perf_counter()
            n = 0
            for s in inputs:
                n += len(tok.encode(s, add_special_tokens=False).ids)
            dt = time.perf_counter() - t0
            if r >= 0:
                times.append(dt)
            tokens = n
        times.sort()
        med = times[len(times) // 2]
        print("hf    %-6s %8.2f MB/s  %9d tokens  %8.1f ms" % (mode, size / 1e6 / med, tokens, med * 1e3))


if __name__ == "__main__":
    main()
