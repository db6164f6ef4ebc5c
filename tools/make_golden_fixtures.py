#!/usr/bin/env python3
"""Generate the golden reference fixtures for dsv2-serve.

For each tiny configuration (``lite``: V2-Lite-shaped, ``v2``: full-V2-shaped) this script

1. draws a small random DeepSeek-V2 checkpoint (seeded, deterministic), rounds it to bf16 and
   writes it in the ORIGINAL Hugging Face layout (REFERENCE.md section 2): ``config.json`` with the
   original spelling (``rope_scaling`` {"type": "yarn"}, ``rope_theta``) and one
   ``model.safetensors`` with per-expert tensor names, row-major [out, in], dtype BF16;
2. loads that directory with the native ``transformers`` deepseek_v2 port (no remote code) in
   float32 and checks
     - every loaded parameter equals the bf16 value written (incl. the fused routed experts),
     - the attention ``scaling`` of every attention module (REFERENCE section 7, trap 1; corrected
       if it lacks the yarn m^2 factor, refused if it still disagrees),
     - the rotary embedding really is yarn (inv_freq against REFERENCE section 3, cos/sin
       multiplier), or plain rope when there is no rope_scaling;
3. computes the reference outputs in float32 (full-sequence forwards only): logits at every prompt
   position and a 20-token greedy continuation with the logits of each step; prompts whose greedy
   top-1/top-2 gap falls under ``--min-gap`` are redrawn deterministically;
4. checks the full forward against the model's own KV-cache path (one token at a time);
5. cross-checks everything against an INDEPENDENT numpy float64 re-implementation written straight
   from REFERENCE.md sections 3-5 (naive and absorbed MLA, yarn, interleaved rope, greedy and
   group_limited_greedy routing), reading the bf16 weights with its own safetensors parser;
6. only when every check passed, writes ``tests/data/golden/<name>/{config.json,
   model.safetensors,reference.safetensors}``.

Exits non-zero (and writes nothing for that configuration) when a check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
from collections import OrderedDict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.numpy  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

GENERATOR = "tools/make_golden_fixtures.py"
NUM_PROMPTS = 3
PROMPT_LENGTHS = (7, 13, 4)
NUM_NEW_TOKENS = 20
FIRST_PROMPT_ID = 3  # ids 0..2 are reserved (0 unused, 1 bos, 2 eos)

# ---------------------------------------------------------------------------------------------
# Configurations (original Hugging Face spelling, as in DeepSeek-V2(-Lite)'s config.json)
# ---------------------------------------------------------------------------------------------

_COMMON = OrderedDict(
    [
        ("architectures", ["DeepseekV2ForCausalLM"]),
        ("attention_bias", False),
        ("attention_dropout", 0.0),
        ("aux_loss_alpha", 0.001),
        ("bos_token_id", 1),
        ("eos_token_id", 2),
        ("first_k_dense_replace", 1),
        ("hidden_act", "silu"),
        ("hidden_size", 128),
        ("initializer_range", 0.02),
        ("intermediate_size", 192),
        ("kv_lora_rank", 64),
        ("max_position_embeddings", 163840),
        ("model_type", "deepseek_v2"),
        ("moe_intermediate_size", 32),
        ("moe_layer_freq", 1),
        ("n_group", 1),
        ("n_routed_experts", 16),
        ("n_shared_experts", 2),
        ("norm_topk_prob", False),
        ("num_attention_heads", 4),
        ("num_experts_per_tok", 6),
        ("num_hidden_layers", 3),
        ("num_key_value_heads", 4),
        ("pretraining_tp", 1),
        ("q_lora_rank", None),
        ("qk_nope_head_dim", 32),
        ("qk_rope_head_dim", 16),
        ("rms_norm_eps", 1e-06),
        ("rope_scaling", None),
        ("rope_theta", 10000),
        ("routed_scaling_factor", 1.0),
        ("scoring_func", "softmax"),
        ("seq_aux", True),
        ("tie_word_embeddings", False),
        ("topk_group", 1),
        ("topk_method", "greedy"),
        ("torch_dtype", "bfloat16"),
        ("transformers_version", "4.39.3"),
        ("use_cache", True),
        ("v_head_dim", 32),
        ("vocab_size", 512),
    ]
)


def _make_config(**overrides):
    cfg = copy.deepcopy(_COMMON)
    for k, v in overrides.items():
        assert k in cfg, k
        cfg[k] = v
    return cfg


CONFIGS = OrderedDict(
    [
        (
            "lite",
            dict(
                seed=1001,
                description=(
                    "V2-Lite-shaped tiny random DeepSeek-V2: q_lora_rank null (q_proj), greedy top-6 of 16 "
                    "routed experts + 2 shared, 3 layers (layer 0 dense), yarn rope (factor 40, "
                    "mscale == mscale_all_dim 0.707) so softmax_scale carries m^2"
                ),
                config=_make_config(
                    rope_scaling=OrderedDict(
                        [
                            ("beta_fast", 32),
                            ("beta_slow", 1),
                            ("factor", 40),
                            ("mscale", 0.707),
                            ("mscale_all_dim", 0.707),
                            ("original_max_position_embeddings", 4096),
                            ("type", "yarn"),
                        ]
                    ),
                ),
            ),
        ),
        (
            "v2",
            dict(
                seed=2002,
                description=(
                    "full-V2-shaped tiny random DeepSeek-V2: q_lora_rank 48 (q_a_proj, q_a_layernorm, "
                    "q_b_proj), group_limited_greedy (n_group 4, topk_group 2) top-6 of 16 routed experts "
                    "+ 2 shared, routed_scaling_factor 2.5, 3 layers (layer 0 dense), no rope_scaling "
                    "(plain rope, m = 1)"
                ),
                config=_make_config(
                    q_lora_rank=48,
                    topk_method="group_limited_greedy",
                    n_group=4,
                    topk_group=2,
                    routed_scaling_factor=2.5,
                    rope_scaling=None,
                ),
            ),
        ),
    ]
)


class FixtureError(RuntimeError):
    """A check failed: the fixture must not be written."""


def check(cond, msg):
    if not cond:
        raise FixtureError(msg)


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Layer helpers shared by the weight generator and the numpy reference
# ---------------------------------------------------------------------------------------------


def is_moe_layer(cfg, layer):
    """REFERENCE section 2: MoE when n_routed_experts is set, layer >= first_k_dense_replace and
    layer % moe_layer_freq == 0."""
    return (
        cfg["n_routed_experts"] is not None
        and layer >= cfg["first_k_dense_replace"]
        and layer % cfg["moe_layer_freq"] == 0
    )


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def to_bf16(a: np.ndarray) -> torch.Tensor:
    """Round a float32/float64 numpy array to bf16 (round to nearest even, via torch)."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def generate_weights(cfg, seed):
    """Returns an OrderedDict name -> bf16 torch tensor in the original layout (REFERENCE section 2).

    Linear layers ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norm weights 1 + N(0, 0.1^2)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    d_nope, d_rope, d_v = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    r_kv, r_q = cfg["kv_lora_rank"], cfg["q_lora_rank"]
    V = cfg["vocab_size"]
    E, I_moe, I_dense = cfg["n_routed_experts"], cfg["moe_intermediate_size"], cfg["intermediate_size"]
    I_shared = I_moe * cfg["n_shared_experts"]

    w = OrderedDict()

    def linear(name, out_f, in_f):
        w[name] = to_bf16(rng.standard_normal((out_f, in_f)) / math.sqrt(in_f))

    def norm(name, n):
        w[name] = to_bf16(1.0 + 0.1 * rng.standard_normal(n))

    def mlp(prefix, inter):
        linear(prefix + ".gate_proj.weight", inter, H)
        linear(prefix + ".up_proj.weight", inter, H)
        linear(prefix + ".down_proj.weight", H, inter)

    w["model.embed_tokens.weight"] = to_bf16(rng.standard_normal((V, H)))
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        norm(p + ".input_layernorm.weight", H)
        if r_q is None:
            linear(p + ".self_attn.q_proj.weight", nh * (d_nope + d_rope), H)
        else:
            linear(p + ".self_attn.q_a_proj.weight", r_q, H)
            norm(p + ".self_attn.q_a_layernorm.weight", r_q)
            linear(p + ".self_attn.q_b_proj.weight", nh * (d_nope + d_rope), r_q)
        linear(p + ".self_attn.kv_a_proj_with_mqa.weight", r_kv + d_rope, H)
        norm(p + ".self_attn.kv_a_layernorm.weight", r_kv)
        linear(p + ".self_attn.kv_b_proj.weight", nh * (d_nope + d_v), r_kv)
        linear(p + ".self_attn.o_proj.weight", H, nh * d_v)
        norm(p + ".post_attention_layernorm.weight", H)
        if is_moe_layer(cfg, layer):
            linear(p + ".mlp.gate.weight", E, H)
            for e in range(E):
                mlp(f"{p}.mlp.experts.{e}", I_moe)
            mlp(p + ".mlp.shared_experts", I_shared)
        else:
            mlp(p + ".mlp", I_dense)
    norm("model.norm.weight", H)
    linear("lm_head.weight", V, H)
    return w


def write_checkpoint(directory, cfg, weights):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in weights.items()},
        os.path.join(directory, "model.safetensors"),
        metadata={"format": "pt"},
    )


def read_safetensors_bf16(path):
    """Independent minimal safetensors reader (no safetensors/torch): returns name -> float32 array.
    Only BF16 tensors are expected (the checkpoint is pure bf16)."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        check(info["dtype"] == "BF16", f"{name}: dtype {info['dtype']}, expected BF16")
        start, end = info["data_offsets"]
        n = int(np.prod(info["shape"])) if info["shape"] else 1
        check(end - start == 2 * n, f"{name}: byte size mismatch")
        u16 = np.frombuffer(blob, dtype="<u2", count=n, offset=base + start)
        out[name] = (u16.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
    return out, header.get("__metadata__", {})


# ---------------------------------------------------------------------------------------------
# REFERENCE.md section 3 formulas
# ---------------------------------------------------------------------------------------------


def yarn_get_mscale(s, m):
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def reference_softmax_scale(cfg):
    """REFERENCE section 3.7."""
    scale = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling")
    if rs:
        mad = rs.get("mscale_all_dim", 0)
        if mad:
            m = yarn_get_mscale(rs["factor"], mad)
            scale = scale * m * m
    return scale


def reference_rope(cfg):
    """Returns (theta[d/2] float64, cos/sin multiplier) per REFERENCE section 3 'YaRN rotary
    frequencies' (or plain rope when there is no rope_scaling)."""
    d = cfg["qk_rope_head_dim"]
    base = float(cfg["rope_theta"])
    i = np.arange(d // 2, dtype=np.float64)
    theta_extra = base ** (-2.0 * i / d)
    rs = cfg.get("rope_scaling")
    if not rs:
        return theta_extra, 1.0
    typ = rs.get("type", rs.get("rope_type"))
    check(typ == "yarn", f"unsupported rope_scaling type {typ!r}")
    factor = float(rs["factor"])
    orig = float(rs["original_max_position_embeddings"])

    def correction_dim(r):
        return d * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(rs.get("beta_fast", 32))), 0)
    high = min(math.ceil(correction_dim(rs.get("beta_slow", 1))), d - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
    theta_inter = theta_extra / factor
    mask = 1.0 - ramp
    theta = theta_inter * (1.0 - mask) + theta_extra * mask
    mult = yarn_get_mscale(factor, rs.get("mscale", 1)) / yarn_get_mscale(factor, rs.get("mscale_all_dim", 0))
    return theta, mult


# ---------------------------------------------------------------------------------------------
# Independent numpy (float64) forward pass, straight from REFERENCE.md sections 3-5
# ---------------------------------------------------------------------------------------------


class NumpyDeepseekV2:
    # Deliberately wrong variants, used only by the self-test that shows the cross-check has teeth.
    MUTATIONS = (
        "scale_without_mscale2",  # trap 1: softmax_scale = (qk_nope + qk_rope)^-0.5 without m^2
        "plain_rope",  # trap 2: yarn ignored, theta = base^(-2i/d)
        "rope_halves_pairing",  # rotate-half on the unpermuted vector (NeoX pairing (i, i + d/2))
        "greedy_routing",  # group_limited_greedy treated as plain greedy
        "no_routed_scaling",  # routed_scaling_factor ignored
    )

    def __init__(self, cfg, weights, mutation=None):
        self.cfg = copy.deepcopy(cfg)
        self.w = weights if mutation else {k: v.astype(np.float64) for k, v in weights.items()}
        self.mutation = mutation
        self.theta, self.cs_mult = reference_rope(cfg)
        self.scale = reference_softmax_scale(cfg)
        if mutation == "scale_without_mscale2":
            self.scale = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
        elif mutation == "plain_rope":
            self.theta, self.cs_mult = reference_rope(dict(cfg, rope_scaling=None))
        elif mutation == "greedy_routing":
            self.cfg["topk_method"] = "greedy"
        elif mutation == "no_routed_scaling":
            self.cfg["routed_scaling_factor"] = 1.0
        elif mutation is not None:
            check(mutation == "rope_halves_pairing", f"unknown mutation {mutation}")
        self.min_router_margin = math.inf  # smallest gap between the k-th and (k+1)-th candidate
        self.min_group_margin = math.inf  # smallest gap between the last kept and first dropped group

    # -- primitives ----------------------------------------------------------------------------
    def rmsnorm(self, x, weight, eps):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    @staticmethod
    def silu(x):
        return x / (1.0 + np.exp(-x))

    def rope(self, x, pos):
        """x [..., T, d] with positions pos [T]: the remote code's form (section 3.4): permute
        to [x0, x2, ..., x1, x3, ...], then rotate-half; output in halves layout."""
        d = x.shape[-1]
        ang = pos[:, None].astype(np.float64) * self.theta[None, :]  # [T, d/2]
        cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1) * self.cs_mult  # [T, d]
        sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1) * self.cs_mult
        if self.mutation == "rope_halves_pairing":
            xp = x
        else:
            xp = np.concatenate([x[..., 0::2], x[..., 1::2]], axis=-1)
        rot = np.concatenate([-xp[..., d // 2 :], xp[..., : d // 2]], axis=-1)
        return xp * cos + rot * sin

    def mlp(self, prefix, x):
        w = self.w
        g = x @ w[prefix + ".gate_proj.weight"].T
        u = x @ w[prefix + ".up_proj.weight"].T
        return (self.silu(g) * u) @ w[prefix + ".down_proj.weight"].T

    # -- attention -----------------------------------------------------------------------------
    def attention(self, layer, x, absorbed):
        cfg, w = self.cfg, self.w
        p = f"model.layers.{layer}.self_attn"
        T = x.shape[0]
        nh = cfg["num_attention_heads"]
        dn, dr, dv, r = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
        eps = cfg["rms_norm_eps"]
        if cfg["q_lora_rank"] is None:
            q = x @ w[p + ".q_proj.weight"].T
        else:
            qa = x @ w[p + ".q_a_proj.weight"].T
            q = self.rmsnorm(qa, w[p + ".q_a_layernorm.weight"], eps) @ w[p + ".q_b_proj.weight"].T
        q = q.reshape(T, nh, dn + dr).transpose(1, 0, 2)  # [nh, T, 192]
        q_nope, q_pe = q[..., :dn], q[..., dn:]
        ckv = x @ w[p + ".kv_a_proj_with_mqa.weight"].T  # [T, r + dr]
        c, k_pe = ckv[:, :r], ckv[:, r:]
        c_norm = self.rmsnorm(c, w[p + ".kv_a_layernorm.weight"], eps)  # only the latent is normalized
        pos = np.arange(T)
        q_pe = self.rope(q_pe, pos)  # [nh, T, dr]
        k_pe = self.rope(k_pe, pos)  # [T, dr], shared by all heads
        wkvb = w[p + ".kv_b_proj.weight"].reshape(nh, dn + dv, r)
        w_uk, w_uv = wkvb[:, :dn, :], wkvb[:, dn:, :]  # [nh, dn, r], [nh, dv, r]
        if absorbed:
            q_lat = np.einsum("htd,hdr->htr", q_nope, w_uk)  # [nh, T, r]
            scores = np.einsum("htr,sr->hts", q_lat, c_norm) + np.einsum("htd,sd->hts", q_pe, k_pe)
        else:
            kv = (c_norm @ w[p + ".kv_b_proj.weight"].T).reshape(T, nh, dn + dv).transpose(1, 0, 2)
            k_nope, v = kv[..., :dn], kv[..., dn:]
            key = np.concatenate([k_nope, np.broadcast_to(k_pe, (nh, T, dr))], axis=-1)
            query = np.concatenate([q_nope, q_pe], axis=-1)
            scores = np.einsum("htd,hsd->hts", query, key)
        scores = scores * self.scale
        causal = np.triu(np.ones((T, T), dtype=bool), k=1)
        scores = np.where(causal[None], -np.inf, scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        prob = np.exp(scores)
        prob /= prob.sum(axis=-1, keepdims=True)
        if absorbed:
            o_lat = np.einsum("hts,sr->htr", prob, c_norm)  # [nh, T, r]
            o = np.einsum("hdr,htr->htd", w_uv, o_lat)  # [nh, T, dv]
        else:
            o = np.einsum("hts,hsd->htd", prob, v)
        o = o.transpose(1, 0, 2).reshape(T, nh * dv)
        return o @ w[p + ".o_proj.weight"].T

    # -- MoE -----------------------------------------------------------------------------------
    def moe(self, layer, x):
        cfg, w = self.cfg, self.w
        p = f"model.layers.{layer}.mlp"
        E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
        method = cfg["topk_method"]
        if method == "gready":  # old V2-236B spelling
            method = "greedy"
        check(cfg["scoring_func"] == "softmax", "only scoring_func softmax is implemented")
        logits = x @ w[p + ".gate.weight"].T  # [T, E]
        logits = logits - logits.max(axis=-1, keepdims=True)
        scores = np.exp(logits)
        scores /= scores.sum(axis=-1, keepdims=True)
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            s = scores[t].copy()
            if method == "greedy":
                pass
            elif method == "group_limited_greedy":
                G, kg = cfg["n_group"], cfg["topk_group"]
                gs = s.reshape(G, E // G).max(axis=-1)
                order = np.argsort(-gs, kind="stable")
                keep = order[:kg]
                if kg < G:
                    self.min_group_margin = min(self.min_group_margin, gs[order[kg - 1]] - gs[order[kg]])
                gmask = np.zeros(G, dtype=bool)
                gmask[keep] = True
                s = np.where(np.repeat(gmask, E // G), s, 0.0)
            else:
                raise FixtureError(f"topk_method {method!r} not implemented")
            order = np.argsort(-s, kind="stable")
            idx = order[:k]
            if k < E:
                self.min_router_margin = min(self.min_router_margin, s[order[k - 1]] - s[order[k]])
            wts = s[idx].copy()
            if k > 1 and cfg["norm_topk_prob"]:
                wts /= wts.sum() + 1e-20
            else:
                wts *= cfg["routed_scaling_factor"]
            for e, wt in zip(idx, wts):
                out[t] += wt * self.mlp(f"{p}.experts.{e}", x[t : t + 1])[0]
        return out + self.mlp(p + ".shared_experts", x)

    # -- model ---------------------------------------------------------------------------------
    def forward(self, ids, absorbed=False):
        cfg, w = self.cfg, self.w
        eps = cfg["rms_norm_eps"]
        x = w["model.embed_tokens.weight"][np.asarray(ids)]
        for layer in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{layer}"
            x = x + self.attention(layer, self.rmsnorm(x, w[p + ".input_layernorm.weight"], eps), absorbed)
            h = self.rmsnorm(x, w[p + ".post_attention_layernorm.weight"], eps)
            x = x + (self.moe(layer, h) if is_moe_layer(cfg, layer) else self.mlp(p + ".mlp", h))
        x = self.rmsnorm(x, w["model.norm.weight"], eps)
        return x @ w["lm_head.weight"].T


def row_rel_err(a, ref):
    """Max over rows of max|a - ref| / max|ref| (per row)."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.max(np.abs(a - ref), axis=-1) / np.max(np.abs(ref), axis=-1)))


# ---------------------------------------------------------------------------------------------
# Hugging Face side
# ---------------------------------------------------------------------------------------------


def load_hf(directory):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        directory,
        dtype=torch.float32,  # `torch_dtype` is the deprecated 4.x spelling of the same argument
        attn_implementation="eager",
        output_loading_info=True,
    )
    model.eval()
    return model, info


def check_loaded_weights(model, cfg, weights_f32):
    """Every HF parameter must equal the bf16 value written; every written tensor must be used."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    used = set()
    n_checked = 0
    expert_re = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
    for name, ref in weights_f32.items():
        m = expert_re.match(name)
        if m:
            prefix, e, kind = m.group(1), int(m.group(2)), m.group(3)
            I = cfg["moe_intermediate_size"]
            if kind == "down_proj":
                key = prefix + ".down_proj"
                got = sd[key][e]
            else:
                key = prefix + ".gate_up_proj"
                got = sd[key][e][:I] if kind == "gate_proj" else sd[key][e][I:]
        else:
            key = name
            check(key in sd, f"written tensor {name} has no counterpart in the loaded model")
            got = sd[key]
        check(got.shape == ref.shape, f"{name}: loaded shape {got.shape} != written {ref.shape}")
        check(np.array_equal(got, ref), f"{name}: loaded values differ from the bf16 values written "
              f"(max abs diff {np.max(np.abs(got - ref))})")
        used.add(key)
        n_checked += 1
    leftovers = sorted(set(sd) - used)
    check(not leftovers, f"loaded model has parameters not filled from the checkpoint: {leftovers}")
    return n_checked, len(sd)


def attention_modules(model):
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ == "DeepseekV2Attention"]


def check_and_fix_scaling(model, cfg):
    correct = reference_softmax_scale(cfg)
    mods = attention_modules(model)
    check(len(mods) == cfg["num_hidden_layers"], f"found {len(mods)} attention modules")
    loaded = [float(m.scaling) for _, m in mods]
    corrected = False
    for (name, m), val in zip(mods, loaded):
        if not math.isclose(val, correct, rel_tol=1e-12, abs_tol=0.0):
            log(f"    {name}.scaling = {val!r} lacks m^2 (correct {correct!r}): correcting")
            m.scaling = correct
            corrected = True
    for name, m in mods:
        check(
            math.isclose(float(m.scaling), correct, rel_tol=1e-12, abs_tol=0.0),
            f"{name}.scaling = {m.scaling!r} != {correct!r} after correction: refusing to write",
        )
    return corrected, loaded, float(mods[0][1].scaling), correct


def check_rope(model, cfg):
    rot = model.model.rotary_emb
    rp = dict(model.config.rope_parameters)
    theta, mult = reference_rope(cfg)
    want_type = "yarn" if cfg.get("rope_scaling") else "default"
    check(rot.rope_type == want_type, f"rotary embedding type {rot.rope_type!r}, expected {want_type!r} "
          f"(config.rope_parameters = {rp})")
    inv = rot.inv_freq.detach().double().numpy()
    check(inv.shape == theta.shape, f"inv_freq shape {inv.shape} != {theta.shape}")
    err = float(np.max(np.abs(inv - theta) / theta))
    check(err < 1e-6, f"inv_freq differs from REFERENCE section 3 (max rel err {err:.3g}): "
          f"hf {inv.tolist()} vs ref {theta.tolist()}")
    if cfg.get("rope_scaling"):
        plain = float(cfg["rope_theta"]) ** (-2.0 * np.arange(len(theta)) / cfg["qk_rope_head_dim"])
        check(np.max(np.abs(plain - theta) / plain) > 0.5, "yarn frequencies indistinguishable from plain rope")
    check(math.isclose(float(rot.attention_scaling), mult, rel_tol=1e-12),
          f"cos/sin multiplier (attention_scaling) {rot.attention_scaling!r} != {mult!r}")
    return rp, inv, err, float(rot.attention_scaling)


@torch.no_grad()
def hf_full_logits(model, ids):
    out = model(input_ids=torch.tensor([list(ids)], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy().copy()


@torch.no_grad()
def hf_incremental_logits(model, ids):
    past = None
    rows = []
    for tok in ids:
        out = model(input_ids=torch.tensor([[int(tok)]], dtype=torch.long), past_key_values=past, use_cache=True)
        past = out.past_key_values
        rows.append(out.logits[0, -1].float().numpy().copy())
    return np.stack(rows)


def top2_gap(row):
    s = np.sort(row.astype(np.float64))
    return float(s[-1] - s[-2])


def greedy(model, prompt, n_new):
    seq = list(prompt)
    ids, logits, gaps = [], [], []
    for _ in range(n_new):
        row = hf_full_logits(model, seq)[-1]  # plain full-sequence forward, no cache
        tok = int(np.argmax(row))
        ids.append(tok)
        logits.append(row)
        gaps.append(top2_gap(row))
        seq.append(tok)
    return np.array(ids, dtype=np.int64), np.stack(logits).astype(np.float32), gaps


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def build_fixture(name, spec, out_root, min_gap):
    cfg = spec["config"]
    seed = spec["seed"]
    log(f"=== {name}: {spec['description']}")
    weights = generate_weights(cfg, seed)
    n_params = sum(v.numel() for v in weights.values())
    log(f"  weights: {len(weights)} tensors, {n_params} parameters, seed {seed}")

    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as stage:
        write_checkpoint(stage, cfg, weights)
        # Independent reader: the file holds exactly the bf16 values we meant to write.
        weights_f32, st_meta = read_safetensors_bf16(os.path.join(stage, "model.safetensors"))
        check(list(sorted(weights_f32)) == list(sorted(weights)), "tensor names in file != generated names")
        for k, v in weights.items():
            check(np.array_equal(weights_f32[k], v.float().numpy()), f"{k}: file contents differ")
        log(f"  wrote original-layout checkpoint ({os.path.getsize(os.path.join(stage, 'model.safetensors'))} "
            f"bytes), re-read with the independent parser: OK")

        # ---- load with the native transformers port ------------------------------------------
        model, info = load_hf(stage)
        log(f"  loaded {type(model).__name__} (transformers {transformers.__version__}, "
            f"attn_implementation={model.config._attn_implementation})")
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            check(not info.get(key), f"from_pretrained {key}: {info.get(key)}")
        check(type(model).__name__ == "DeepseekV2ForCausalLM", f"unexpected class {type(model).__name__}")
        check(all(p.dtype == torch.float32 for p in model.parameters()), "model not loaded in float32")
        n_checked, n_sd = check_loaded_weights(model, cfg, weights_f32)
        log(f"  weight conversion: {n_checked} written tensors == {n_sd} loaded parameters, bit-exact "
            f"(incl. fused experts gate_up_proj/down_proj, q/kv projections)")
        gate_up = model.model.layers[1].mlp.experts.gate_up_proj
        log(f"    e.g. layer1 experts.gate_up_proj {tuple(gate_up.shape)}, experts.down_proj "
            f"{tuple(model.model.layers[1].mlp.experts.down_proj.shape)}")

        # ---- trap 1: attention scaling -------------------------------------------------------
        corrected, loaded_scal, used_scal, correct_scal = check_and_fix_scaling(model, cfg)
        log(f"  attention scaling: loaded {sorted(set(loaded_scal))}, correct {correct_scal!r}, "
            f"corrected={corrected}, used {used_scal!r}")

        # ---- trap 2: rope --------------------------------------------------------------------
        rp, inv, inv_err, att_scal = check_rope(model, cfg)
        log(f"  rope: config.rope_parameters = {rp}")
        log(f"        rotary_emb.rope_type = {model.model.rotary_emb.rope_type!r}, inv_freq matches "
            f"REFERENCE section 3 (max rel err {inv_err:.2e}), cos/sin multiplier {att_scal!r}")
        log(f"        inv_freq = {np.array2string(inv, precision=6, max_line_width=200)}")

        # ---- trap 3: rules the native port ignores -------------------------------------------
        check(cfg["norm_topk_prob"] is False, "norm_topk_prob must stay false (native port ignores it)")
        check(cfg["moe_layer_freq"] == 1, "moe_layer_freq must stay 1 (native port ignores it)")
        for layer in range(cfg["num_hidden_layers"]):
            hf_moe = type(model.model.layers[layer].mlp).__name__ == "DeepseekV2Moe"
            check(hf_moe == is_moe_layer(cfg, layer), f"layer {layer}: MoE-ness differs from section 2")

        # ---- reference outputs ---------------------------------------------------------------
        ref = NumpyDeepseekV2(cfg, weights_f32)
        tensors = OrderedDict()
        prompt_seeds = []
        min_greedy_gap = math.inf
        worst_np = 0.0
        worst_absorbed = 0.0
        worst_cache_last = 0.0
        worst_cache_all = 0.0
        lo, hi = math.inf, -math.inf
        for i, length in enumerate(PROMPT_LENGTHS[:NUM_PROMPTS]):
            for attempt in range(100):
                pseed = seed * 1000 + 10 * i + attempt
                prng = np.random.Generator(np.random.PCG64(pseed))
                prompt = prng.integers(FIRST_PROMPT_ID, cfg["vocab_size"], size=length).astype(np.int64)
                gids, glogits, gaps = greedy(model, prompt, NUM_NEW_TOKENS)
                if min(gaps) >= min_gap:
                    break
                log(f"  prompt {i}: seed {pseed} has greedy top-1/top-2 gap {min(gaps):.3g} < {min_gap}: redraw")
            else:
                raise FixtureError(f"prompt {i}: no prompt with greedy gaps >= {min_gap} in 100 tries")
            prompt_seeds.append(pseed)
            min_greedy_gap = min(min_greedy_gap, min(gaps))
            plogits = hf_full_logits(model, prompt)
            check(np.all(np.isfinite(plogits)) and np.all(np.isfinite(glogits)), "non-finite logits")
            check(np.array_equal(plogits[-1], glogits[0]), "greedy step 0 logits != last prompt row")
            check(np.ptp(plogits, axis=-1).min() > 1e-3, "logits (nearly) constant across the vocabulary")

            # KV-cache path vs full forward.
            full_seq = np.concatenate([prompt, gids[:-1]])
            full = hf_full_logits(model, full_seq)
            inc = hf_incremental_logits(model, full_seq)
            d_last = float(np.max(np.abs(inc[length - 1] - plogits[-1])))
            d_all = float(np.max(np.abs(inc - full)))
            check(d_last <= 1e-5, f"prompt {i}: KV-cache logits at the last prompt position differ by {d_last}")
            check(np.array_equal(np.argmax(inc[length - 1 :], -1), gids), f"prompt {i}: cached greedy differs")
            worst_cache_last = max(worst_cache_last, d_last)
            worst_cache_all = max(worst_cache_all, d_all)

            # Independent numpy forward over prompt + continuation (rows length-1.. are the greedy steps).
            np_naive = ref.forward(full_seq, absorbed=False)
            np_abs = ref.forward(full_seq, absorbed=True)
            hf_rows = np.concatenate([plogits, glogits[1:]])
            check(np.allclose(full, hf_rows, rtol=0, atol=1e-5), f"prompt {i}: full forward over the "
                  f"continuation disagrees with the per-step logits")
            e_np = row_rel_err(np_naive, hf_rows)
            e_abs_vs_naive = row_rel_err(np_abs, np_naive)
            e_abs = row_rel_err(np_abs, hf_rows)
            check(np.array_equal(np.argmax(np_naive[length - 1 :], -1), gids), f"prompt {i}: numpy greedy differs")
            worst_np = max(worst_np, e_np, e_abs)
            worst_absorbed = max(worst_absorbed, e_abs_vs_naive)
            lo = min(lo, float(np.min(hf_rows)))
            hi = max(hi, float(np.max(hf_rows)))
            log(f"  prompt {i}: len {length}, seed {pseed}, ids {prompt.tolist()}")
            log(f"    greedy {gids.tolist()}")
            log(f"    min greedy gap {min(gaps):.4f}; logits range [{np.min(hf_rows):.3f}, {np.max(hf_rows):.3f}]; "
                f"KV-cache vs full: last prompt pos {d_last:.2e}, all positions {d_all:.2e}")
            log(f"    numpy vs HF max row rel err: naive {e_np:.2e}, absorbed {e_abs:.2e} "
                f"(absorbed vs naive {e_abs_vs_naive:.2e})")
            check(e_np < 1e-4 and e_abs < 1e-4, f"prompt {i}: numpy re-implementation disagrees with HF "
                  f"(naive {e_np:.3g}, absorbed {e_abs:.3g})")

            if i == 0:
                # Self-test: each deliberately wrong variant must be caught by the 1e-4 criterion.
                for mut in NumpyDeepseekV2.MUTATIONS:
                    if mut in ("scale_without_mscale2", "plain_rope") and not cfg.get("rope_scaling"):
                        continue  # identical to the correct model when there is no rope_scaling
                    if mut == "greedy_routing" and cfg["topk_method"] != "group_limited_greedy":
                        continue
                    if mut == "no_routed_scaling" and cfg["routed_scaling_factor"] == 1.0:
                        continue
                    e_mut = row_rel_err(NumpyDeepseekV2(cfg, ref.w, mutation=mut).forward(full_seq), hf_rows)
                    log(f"    self-test: numpy with mutation {mut!r} vs HF max row rel err {e_mut:.2e}")
                    check(e_mut > 1e-3, f"mutation {mut} is not detected by the cross-check ({e_mut:.3g})")

            tensors[f"prompt.{i}.ids"] = prompt.astype(np.int64)
            tensors[f"prompt.{i}.logits"] = plogits.astype(np.float32)
            tensors[f"prompt.{i}.greedy_ids"] = gids.astype(np.int64)
            tensors[f"prompt.{i}.greedy_logits"] = glogits.astype(np.float32)

        check(max(abs(lo), abs(hi)) < 100 and hi - lo > 1.0, f"logit range [{lo}, {hi}] not O(1)-O(10)")
        log(f"  logits over all rows: min {lo:.3f}, max {hi:.3f}, max |logit| {max(abs(lo), abs(hi)):.3f}")
        log(f"  numpy router margins: min top-k margin {ref.min_router_margin:.3e}, "
            f"min group margin {ref.min_group_margin if ref.min_group_margin != math.inf else 'n/a'}")
        log(f"  SUMMARY {name}: scaling_corrected={corrected} scaling={used_scal!r} min_greedy_gap={min_greedy_gap:.4f} "
            f"numpy_vs_hf_max_row_rel_err={worst_np:.2e} kv_cache_max_abs_diff={worst_cache_all:.2e}")

        metadata = OrderedDict(
            [
                ("generator", GENERATOR),
                ("description", spec["description"] + ". Reference: transformers native deepseek_v2 port, "
                 "float32, eager attention, full-sequence forwards; greedy = argmax over 20 steps, no eos stop."),
                ("config", name),
                ("torch_version", torch.__version__),
                ("transformers_version", transformers.__version__),
                ("seed", str(seed)),
                ("prompt_seeds", ",".join(str(s) for s in prompt_seeds)),
                ("num_prompts", str(NUM_PROMPTS)),
                ("num_new_tokens", str(NUM_NEW_TOKENS)),
                ("scaling_corrected", "true" if corrected else "false"),
                ("attention_scaling", repr(used_scal)),
                ("attention_scaling_loaded", repr(loaded_scal[0])),
                ("rope_cos_sin_multiplier", repr(att_scal)),
                ("min_greedy_gap", repr(min_greedy_gap)),
                ("min_gap_threshold", repr(min_gap)),
                ("numpy_crosscheck_max_row_rel_err", f"{worst_np:.3e}"),
                ("kv_cache_max_abs_diff", f"{worst_cache_all:.3e}"),
                ("min_router_topk_margin", f"{ref.min_router_margin:.3e}"),
                ("min_router_group_margin",
                 f"{ref.min_group_margin:.3e}" if ref.min_group_margin != math.inf else "n/a"),
            ]
        )
        dest = os.path.join(out_root, name)
        os.makedirs(dest, exist_ok=True)
        for fn in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(stage, fn), os.path.join(dest, fn))
        safetensors.numpy.save_file(dict(tensors), os.path.join(dest, "reference.safetensors"), metadata=metadata)
    for fn in ("config.json", "model.safetensors", "reference.safetensors"):
        log(f"  wrote {os.path.join(dest, fn)} ({os.path.getsize(os.path.join(dest, fn))} bytes)")
    return metadata


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(here), "tests", "data", "golden"),
                    help="output root (default: tests/data/golden of this repo)")
    ap.add_argument("--only", choices=list(CONFIGS), action="append", help="build only this configuration")
    ap.add_argument("--min-gap", type=float, default=1e-3, help="minimum greedy top-1/top-2 logit gap")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}, "
        f"safetensors {safetensors.__version__}")
    failed = False
    for name in args.only or list(CONFIGS):
        try:
            build_fixture(name, CONFIGS[name], args.out, args.min_gap)
        except FixtureError as e:
            log(f"  REFUSED {name}: {e}")
            failed = True
    if failed:
        log("FAILED: at least one fixture was refused (nothing written for it)")
        return 1
    log("all fixtures written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
