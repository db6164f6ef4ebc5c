#!/usr/bin/env python3
"""transformers loads what dsv2-make-checkpoint writes, and computes what dsv2-generate computes.

Writes a small random checkpoint (2 layers, 2 shards) with dsv2-make-checkpoint, loads it with the
native transformers deepseek_v2 port (the fixtures' pinned environment, tools/requirements-fixtures.txt)
and compares its greedy continuation of a few token ids with dsv2-generate's on the same directory.
This is what a user who moves between the two tools does; transformers 5.x validates config.json by
type (an int where it wants a float is refused), so the spelling of every field matters.
Exits 77 (skipped) when the environment lacks torch/transformers.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError as e:  # the pinned environment is made by tools/make_golden_fixtures.sh
    print(f"SKIPPED: no torch/transformers in {sys.executable} ({e}); "
          "create it with tools/make_golden_fixtures.sh or set DSV2_FIXTURES_PYTHON")
    sys.exit(77)

PROMPT = [100000, 1234, 42, 7, 99, 512]
STEPS = 4
MIN_GAP = 1e-3  # beyond a near tie the two implementations may differ in the last bit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dsv2-hf-load-")
    try:
        ckpt = os.path.join(tmp, "ckpt")
        subprocess.run([os.path.join(a.bin_dir, "dsv2-make-checkpoint"), "--preset", "small",
                        "--layers", "2", "--shards", "2", "--out", ckpt], check=True,
                       stderr=subprocess.DEVNULL)
        print(open(os.path.join(ckpt, "config.json")).read())
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        print(f"transformers {transformers.__version__} loaded {ckpt}: "
              f"{sum(p.numel() for p in model.parameters()):,} parameters")
        ids, hf = list(PROMPT), []
        with torch.no_grad():
            for _ in range(STEPS):
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
                top = torch.topk(logits, 2)
                if float(top.values[0] - top.values[1]) < MIN_GAP:
                    break  # a near tie: compare the steps before it only
                hf.append(int(top.indices[0]))
                ids.append(hf[-1])
        out = subprocess.run([os.path.join(a.bin_dir, "dsv2-generate"), "--model", ckpt, "--device", "cpu",
                              "--prompt-ids", ",".join(map(str, PROMPT)), "--max-new-tokens", str(STEPS),
                              "--stop-at-eos=false", "--threads", "2"],
                             check=True, capture_output=True, text=True).stdout
        last = [l for l in out.splitlines() if l.strip()][-1]  # "ids" alone without a tokenizer
        ours = [int(x) for x in last.removeprefix("ids: ").split(",")]
        print(f"greedy from {PROMPT}: transformers {hf}, dsv2-generate {ours}")
        if not hf or ours[: len(hf)] != hf:
            print("FAILED: the greedy continuations differ")
            return 1
        print("OK")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
