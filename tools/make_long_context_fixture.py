"""Generate tests/data/golden/lite/long_context.safetensors: transformers past YaRN's original
positions (issue 31, part 5).

The golden ``lite`` checkpoint (tests/data/golden/lite: V2-Lite-shaped, yarn rope with factor 40
over original_max_position_embeddings 4096) is loaded with the native transformers deepseek_v2
port in float32 with eager attention, and with the same trap fixes as make_golden_fixtures.py
(the attention scaling's m^2, the rope check). A random 4,500-token prompt (seeded) runs as one
full-sequence forward; then 8 greedy tokens, each by a full forward over everything so far.
Stored (the prompt's logits at every position would be 9 MB):
  ids             I64 [4500]        the prompt
  rows            I64 [R]           the positions whose logits are kept: every 64th and the last 64
  logits          F32 [R, vocab]    transformers' logits at those positions
  greedy_ids      I64 [8]           the greedy continuation
  greedy_logits   F32 [8, vocab]    the logits each greedy token was chosen from
Usage: tools/make_long_context_fixture.sh (the pinned environment of make_golden_fixtures.sh)
"""

import os
import sys

import numpy as np
import safetensors.numpy
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden_fixtures as golden  # noqa: E402

PROMPT_LEN = 4500
NEW_TOKENS = 8
SEED = 4500


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    lite = os.path.join(os.path.dirname(here), "tests", "data", "golden", "lite")
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    import json

    cfg = json.load(open(os.path.join(lite, "config.json")))
    model, info = golden.load_hf(lite)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        golden.check(not info.get(key), f"from_pretrained {key}: {info.get(key)}")
    corrected, _, used, correct = golden.check_and_fix_scaling(model, cfg)
    golden.log(f"attention scaling {used!r} (correct {correct!r}, corrected={corrected})")
    golden.check_rope(model, cfg)
    orig = cfg["rope_scaling"]["original_max_position_embeddings"]
    golden.check(PROMPT_LEN > orig, f"the prompt must pass {orig} positions")

    rng = np.random.default_rng(SEED)
    ids = rng.integers(0, cfg["vocab_size"], size=PROMPT_LEN).astype(np.int64)
    with torch.no_grad():
        logits = golden.hf_full_logits(model, ids)  # [PROMPT_LEN, vocab] float32
        seq = list(ids)
        greedy_ids, greedy_logits = [], []
        row = logits[-1]
        for _ in range(NEW_TOKENS):
            nxt = int(np.argmax(row))
            golden.check(golden.top2_gap(row) > 1e-3, f"greedy near-tie at {len(seq)}")
            greedy_ids.append(nxt)
            greedy_logits.append(row)
            seq.append(nxt)
            row = golden.hf_full_logits(model, np.array(seq, dtype=np.int64))[-1]
    rows = sorted(set(range(0, PROMPT_LEN, 64)) | set(range(PROMPT_LEN - 64, PROMPT_LEN)))
    out = os.path.join(lite, "long_context.safetensors")
    safetensors.numpy.save_file(
        {
            "ids": ids,
            "rows": np.array(rows, dtype=np.int64),
            "logits": np.ascontiguousarray(logits[rows]).astype(np.float32),
            "greedy_ids": np.array(greedy_ids, dtype=np.int64),
            "greedy_logits": np.stack(greedy_logits).astype(np.float32),
        },
        out,
        metadata={
            "generator": "tools/make_long_context_fixture.py",
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "seed": str(SEED),
            "attention_scaling": repr(used),
            "description": f"lite golden checkpoint, a {PROMPT_LEN}-token random prompt past "
            f"original_max_position_embeddings {orig}; transformers float32 eager, full-sequence "
            f"forwards; {NEW_TOKENS} greedy tokens",
        },
    )
    golden.log(f"wrote {out} ({os.path.getsize(out)} bytes); greedy {greedy_ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
