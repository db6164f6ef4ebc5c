#!/usr/bin/env python3
"""Tokenizer fixtures for dsv2-serve, computed with Hugging Face `tokenizers` (Rust, PyPI).

Run through tools/make_tokenizer_fixtures.sh (it makes the venv). Subcommands:
  all (default)      unicode + fixtures
  unicode            coordinator/tokenizer/unicode_ranges.inc: the Unicode property sets of the
                     regex engine HF tokenizers uses (Oniguruma), probed through tokenizers itself
  fixtures           tests/data/tokenizer/: corpus, the V2-style tokenizer (trained here), a copy
                     of the real DeepSeek-V3 tokenizer, expected ids / decodes / chat renderings
  bench-text OUT     >= 1 MB of mixed text for bench/tokenizer_bench (not committed)

Everything is seeded: the same tokenizers version gives the same files.
"""
import json
import os
import random
import shutil
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import AddedToken

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
V3_SRC = os.path.join(ROOT, "..", "shared", "tokenizers", "deepseek-v3")
UNICODE_INC = os.path.join(ROOT, "coordinator", "tokenizer", "unicode_ranges.inc")

sys.path.insert(0, os.path.dirname(__file__))
import tokenizer_corpus  # noqa: E402  (the text generators)

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"

# --- The DeepSeek-V2 pre-tokenizer ----------------------------------------------------------
# Reconstructed from public material (REFERENCE.md §6; llama.cpp's "deepseek-llm" pre-tokenizer
# regexes, which were converted from the DeepSeek LLM / V2 tokenizer.json; and a public fixture
# script that mirrors deepseek-ai/DeepSeek-V2-Lite's tokenizer.json). Three Greek Extended range
# ends are written as escapes: copies of the regex that went through NFC normalization carry
# U+03CE, U+0390 and U+038A there, which makes the ranges descending; the checkpoint's file has
# U+1F7D, U+1FD3 and U+1FDB (the Unicode Cased_Letter ranges the class was built from).
V2_LETTERS = (
    "A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚ"
    "Ḁ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿ"
    "ⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")


def _split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


V2_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        _split("[\r\n]"),
        _split("\\s?[" + V2_LETTERS + "]+"),
        _split("\\s?[!-/:-~！-／：-～‘-‟　-。]+"),
        _split("\\s+$"),
        _split("[一-龥ࠀ-一가-퟿]+"),
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

V2_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}")

# Added tokens of the V2-style tokenizer: DeepSeek's, plus a few that exercise lstrip, rstrip,
# single_word and normalized (HF semantics) so that the exactness tests cover them.
V2_ADDED = [
    AddedToken(BOS, special=True, normalized=False),
    AddedToken(EOS, special=True, normalized=False),
    AddedToken("<｜fim▁hole｜>", special=False, normalized=True),
    AddedToken("<｜fim▁begin｜>", special=False, normalized=True),
    AddedToken("<｜fim▁end｜>", special=False, normalized=True),
    AddedToken("<|EOT|>", special=True, normalized=False),
    AddedToken("<mask>", special=True, lstrip=True, rstrip=False, normalized=False),
    AddedToken("[SEP]", special=False, lstrip=True, rstrip=True, normalized=True),
    AddedToken("xyzzy", special=False, single_word=True, normalized=True),
]

UNICODE_PROPERTIES = [
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc",
    "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "Cc",
    "Cf", "Co",
]


def probe_set(pattern, text, cps):
    """Code points that `pattern` matches, as seen by the regex engine of HF tokenizers."""
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    kept = set()
    for piece, _ in split.pre_tokenize_str(text):
        kept.update(map(ord, piece))
    return [c for c in cps if c not in kept]


def to_ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def write_unicode():
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    text = "".join(map(chr, cps))
    sets = [(p, "\\p{%s}" % p) for p in UNICODE_PROPERTIES]
    sets += [("White_Space", "\\s"), ("Word", "\\w")]
    import tokenizers
    lines = [
        "// Generated by tools/make_tokenizer_fixtures.py (unicode) with tokenizers "
        + tokenizers.__version__ + ": DO NOT EDIT.",
        "// Code point ranges [first, last] of the Unicode properties as the regex engine of",
        "// Hugging Face tokenizers (Oniguruma) sees them; see unicode_tables.h.",
    ]
    for name, pattern in sets:
        ranges = to_ranges(probe_set(pattern, text, cps))
        body = ",".join("{0x%X,0x%X}" % (a, b) for a, b in ranges)
        lines.append('DSV2_UNICODE_PROPERTY("%s", %d, {%s})' % (name, len(ranges), body))
        print("unicode: %-12s %6d ranges" % (name, len(ranges)))
    with open(UNICODE_INC, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# --- Fixtures -----------------------------------------------------------------------------------
def train_v2(out_dir):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(p["pattern"]["Regex"]), behavior="isolated")
        for p in V2_PRE_TOKENIZER["pretokenizers"][:5]
    ] + [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4600, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(tokenizer_corpus.training_texts(seed=7), trainer)
    tok.add_special_tokens([t for t in V2_ADDED if t.special])
    tok.add_tokens([t for t in V2_ADDED if not t.special])
    data = json.loads(tok.to_str())
    # Exactly the V2 pre-tokenizer JSON (the trainer saw the same regexes), the V2 normalizer,
    # and a BOS template post-processor; merges in the legacy "a b" string form (V3's copy uses
    # the same form; the [a, b] pair form is covered by the unit tests).
    data["normalizer"] = {"type": "Sequence", "normalizers": []}
    data["pre_tokenizer"] = V2_PRE_TOKENIZER
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {BOS: {"id": BOS, "ids": [tok.token_to_id(BOS)], "tokens": [BOS]}},
    }
    data["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=None, separators=(",", ":"))
    config = {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": BOS, "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "eos_token": {"__type": "AddedToken", "content": EOS, "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 16384,
        "pad_token": None, "sp_model_kwargs": {}, "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast", "chat_template": V2_CHAT_TEMPLATE,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


def with_bos(path):
    """The tokenizer as transformers' LlamaTokenizerFast (add_bos_token=true) runs it: BOS first."""
    tok = Tokenizer.from_file(path)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=BOS + " $A", special_tokens=[(BOS, bos)])
    return tok


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def expected_for(name, corpus):
    path = os.path.join(DATA, name, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    tok_bos = with_bos(path)
    rows = []
    for i, text in enumerate(corpus):
        ids = tok.encode(text, add_special_tokens=False).ids
        row = {"i": i, "ids": ids}
        if i < 300:
            row["ids_special"] = tok_bos.encode(text, add_special_tokens=True).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        if dec != text:
            row["decoded"] = dec
        dec_skip = tok.decode(ids, skip_special_tokens=True)
        if dec_skip != dec:
            row["decoded_skip"] = dec_skip
        rows.append(row)
    write_jsonl(os.path.join(DATA, name, "expected.jsonl"), rows)
    # Decoding of arbitrary id sequences: partial UTF-8, special ids, added tokens.
    rng = random.Random(11 + len(name))
    n = tok.get_vocab_size(with_added_tokens=True)
    specials = [t.content for t in tok.get_added_tokens_decoder().values()]
    special_ids = [tok.token_to_id(s) for s in specials]
    dec_rows = []
    for k in range(300):
        length = rng.randint(0, 12)
        ids = []
        for _ in range(length):
            r = rng.random()
            if r < 0.15:
                ids.append(rng.choice(special_ids))
            elif r < 0.5:
                ids.append(rng.randint(0, 300))  # single bytes and short tokens
            else:
                ids.append(rng.randrange(n))
        ids = [i for i in ids if tok.id_to_token(i) is not None]
        dec_rows.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                         "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    write_jsonl(os.path.join(DATA, name, "decode.jsonl"), dec_rows)
    print("fixtures: %s: %d strings, %d decode cases" % (name, len(rows), len(dec_rows)))


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Use French."},
     {"role": "user", "content": "Bonjour\n\nça va ?"}],
    [{"role": "user", "content": "你好，世界 🌍"}, {"role": "assistant", "content": "  spaces  "},
     {"role": "user", "content": ""}],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "<｜User｜> literal"}],
]
V3_TOOL_CONVERSATIONS = [
    [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": "{\"t\": 21}"},
     {"role": "tool", "content": "{\"t\": 22}"}, {"role": "assistant", "content": "Warm."},
     {"role": "user", "content": "Thanks"}],
    [{"role": "user", "content": "Run it"}, {"role": "tool", "content": "ok"}],
]


def write_chat(name, conversations):
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(os.path.join(DATA, name))
    rows = []
    for conv in conversations:
        for gen in (False, True):
            text = hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            rows.append({"messages": conv, "add_generation_prompt": gen, "text": text})
    write_jsonl(os.path.join(DATA, name, "chat.jsonl"), rows)


# Variants of the V2-style tokenizer that exercise the other component options; the tests patch
# these members into v2/tokenizer.json and compare ids with HF on a slice of the corpus.
def _sp(pattern, behavior, invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}


_BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
VARIANTS = [
    ("split_removed", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("\\s+", "Removed"), _BL]}}),
    ("split_merged_prev", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("[,.!? ]", "MergedWithPrevious"), _BL]}}),
    ("split_merged_next", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("[,.!? ]", "MergedWithNext"), _BL]}}),
    ("split_contiguous", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("\\p{P}", "Contiguous"), _BL]}}),
    ("split_invert", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("\\p{L}+", "Isolated", True), _BL]}}),
    ("split_string", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp(" ", "MergedWithNext", False, "String"), _BL]}}),
    ("split_empty_matches", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("x*", "Isolated"), _BL]}}),
    ("split_anchors", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_sp("^\\s*\\w+|\\w+$|\\d+\\b", "Isolated"), _BL]}}),
    ("digits_contiguous", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, _BL]}}),
    ("bytelevel_regex", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}),
    ("bytelevel_plain", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}}),
    ("normalizers", {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "  "}, "content": " "},
        {"type": "Replace", "pattern": {"Regex": "\\d"}, "content": "#"},
        {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Prepend", "prepend": "\u2581"}]}}),
    ("merges_as_pairs", {"merges_as_pairs": True}),
    ("decoder_none", {"decoder": None}),
    ("decoder_sequence", {"decoder": {"type": "Sequence", "decoders": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}}),
]


def write_variants(corpus):
    base = json.load(open(os.path.join(DATA, "v2", "tokenizer.json"), encoding="utf-8"))
    indices = list(range(40)) + list(range(200, len(corpus), 40))
    rows = []
    for name, patch in VARIANTS:
        data = json.loads(json.dumps(base))
        for k, v in patch.items():
            if k == "merges_as_pairs":
                data["model"]["merges"] = [m.split(" ") for m in data["model"]["merges"]]
            else:
                data[k] = v
        tok = Tokenizer.from_str(json.dumps(data))
        cases = []
        for i in indices:
            ids = tok.encode(corpus[i], add_special_tokens=False).ids
            case = {"i": i, "ids": ids}
            decoded = tok.decode(ids, skip_special_tokens=False)
            if decoded != corpus[i]:
                case["decoded"] = decoded
            cases.append(case)
        rows.append({"name": name, "patch": patch, "cases": cases})
    write_jsonl(os.path.join(DATA, "v2", "variants.jsonl"), rows)
    print("fixtures: %d V2 variants x %d strings" % (len(rows), len(indices)))


def write_fixtures():
    os.makedirs(DATA, exist_ok=True)
    corpus = tokenizer_corpus.test_corpus(seed=1234)
    write_jsonl(os.path.join(DATA, "corpus.jsonl"), [{"text": t} for t in corpus])
    print("fixtures: corpus of %d strings (%d bytes)" % (len(corpus),
                                                          sum(len(t.encode()) for t in corpus)))
    v3 = os.path.join(DATA, "v3")
    os.makedirs(v3, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "LICENSE.npm-package"):
        shutil.copyfile(os.path.join(V3_SRC, f), os.path.join(v3, f))
    train_v2(os.path.join(DATA, "v2"))
    expected_for("v3", corpus)
    expected_for("v2", corpus)
    write_variants(corpus)
    write_chat("v3", CONVERSATIONS + V3_TOOL_CONVERSATIONS)
    write_chat("v2", CONVERSATIONS)


def write_bench_text(out):
    text = tokenizer_corpus.bench_text(seed=99, min_bytes=1 << 20)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print("bench-text: %d bytes to %s" % (len(text.encode()), out))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "all"
    if cmd in ("all", "unicode"):
        write_unicode()
    if cmd in ("all", "fixtures"):
        write_fixtures()
    if cmd == "bench-text":
        write_bench_text(argv[2])
    elif cmd not in ("all", "unicode", "fixtures"):
        sys.exit("usage: make_tokenizer_fixtures.py [all|unicode|fixtures|bench-text OUT]")


if __name__ == "__main__":
    main(sys.argv)
