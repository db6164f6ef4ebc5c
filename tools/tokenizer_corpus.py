"""Seeded text generators for the tokenizer fixtures and benchmark (see make_tokenizer_fixtures.py).

Categories: English prose, source code, Chinese, Japanese, Korean, Greek, Cyrillic, emoji and
ZWJ sequences, digit runs, whitespace runs (spaces, tabs, newlines, CR), text containing
special-token strings, and random valid UTF-8 (any scalar value, surrogates excluded).
"""
import random

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of "
    "times; it was the age of wisdom, it was the age of foolishness. Don't count your chickens "
    "before they hatch — they'll surprise you. We're testing a tokenizer that must agree with "
    "another one, byte for byte, on every string it is given. I've seen things you'd not believe: "
    "attack ships on fire off the shoulder of Orion. A naïve café owner's résumé listed 3.5 years "
    "of experience (2019–2023) at \"Le Petit Déjeuner\". Mr. O'Neil paid $1,234.56 on 12/31/2024 "
    "at 11:59 p.m., e-mail: someone@example.com, https://example.org/path?q=1&r=2#frag."
).split(" ")

WORDS = (
    "time person year way day thing man world life hand part child eye woman place work week case "
    "point government company number group problem fact be have do say get make go know take see "
    "come think look want give use find tell ask seem feel try leave call good new first last long "
    "great little own other old right big high different small large next early young important "
    "few public bad same able to of in for on with at by from up about into over after beneath "
    "under above the and a that I it not he as you this but his they her she or an will my one all "
    "would there their what so out if who which go me when can like no just him know take people "
    "into year your some could them than then now only its also back two how our well even want "
    "because any these give most us tokenizer encoder decoder server latency throughput expert"
).split()

CODE = [
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += v[i] * w[i];\n}\n",
    "#include <vector>\nstd::vector<int32_t> ids;\nids.reserve(1024);\n",
    "if x != None and len(x) >= 3:\n    print(f\"{x[0]!r:>10}\")\n",
    "SELECT id, name FROM users WHERE age > 21 ORDER BY name DESC;\n",
    "const f = (a) => a.map(x => x ** 2).filter(Boolean);\n",
    "fn main() { let v: Vec<u8> = vec![0xFF, 0x10]; println!(\"{:?}\", v); }\n",
    "<div class=\"box\" id='main'><p>Hello &amp; welcome</p></div>\n",
    "    elif token in self.special_tokens:  # keep it\n        continue\n",
    "x = {\"key\": [1, 2.5, -3e10, null, true], 'k2': None}\n",
    "$ ./configure --prefix=/usr && make -j2 && sudo make install\n",
    "    return absl::InvalidArgumentError(absl::StrCat(\"bad id \", id));\n",
    "matrix[i][j] += alpha*A[i][k]*B[k][j];  // O(n^3)\n",
    "/* multi-line\n * comment */\nstatic_assert(sizeof(T) == 8, \"T must be 64-bit\");\n",
]

CHINESE = ("深度求索发布了新的语言模型。今天天气很好，我们去公园散步吧！这个分词器需要与参考实现完全一致。"
           "人工智能正在改变世界，机器学习和自然语言处理是其中的重要领域。北京、上海和深圳都是大城市。")
JAPANESE = ("今日はとても良い天気ですね。私は東京に住んでいます。カタカナとひらがなと漢字を混ぜて書きます。"
            "トークナイザーのテストをしています。コンピューターで日本語を処理するのは難しいです。")
KOREAN = ("안녕하세요, 만나서 반갑습니다. 오늘 날씨가 정말 좋네요. 한국어 문장을 토큰화하는 테스트입니다. "
          "서울은 대한민국의 수도입니다.")
GREEK = ("Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Καλημέρα κόσμε! Ἐν ἀρχῇ ἦν ὁ λόγος, "
         "καὶ ὁ λόγος ἦν πρὸς τὸν θεόν. ΑΒΓΔΕΖΗΘ αβγδεζηθ ώ ΐ Ί ῗ.")
CYRILLIC = ("Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир! Москва — столица "
            "России. Ґанок і їжак в Україні. Ђорђе и Љубица из Србије. ЁЖИК в тумане.")

EMOJI = ["😀", "🚀", "👍", "👍🏽", "❤️", "🇺🇸", "🇯🇵", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏾‍💻", "🧑‍🤝‍🧑",
         "1️⃣", "#️⃣", "🤷‍♀️", "😶‍🌫️", "🐕‍🦺", "✨", "🔥", "🎉", "☕", "©", "™", "🫠", "🪿"]

SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
            "<｜tool▁calls▁begin｜>", "<｜tool▁output▁end｜>", "<｜fim▁hole｜>", "<｜▁pad▁｜>",
            "<|EOT|>", "<mask>", "[SEP]", "xyzzy", "<｜User", "｜>", "<｜", "<mask", "xyzzyx"]

SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\t", "    ", "\u00a0", "\u3000",
          "\u2009", " \t \n", "\r", "\u2028", "\u000b", "\u000c", "\u0085", "\u180e", "\ufeff"]

# Code point pools for random text; weights favour the blocks real text lives in.
POOLS = [
    (30, [(0x20, 0x7E)]),
    (8, [(0x00, 0x1F), (0x7F, 0x9F)]),
    (10, [(0xA0, 0x24F), (0x300, 0x36F)]),
    (10, [(0x370, 0x52F), (0x530, 0x10FF)]),
    (10, [(0x1100, 0x2FFF)]),
    (10, [(0x3000, 0x9FFF), (0xAC00, 0xD7A3)]),
    (6, [(0xE000, 0xFFFF)]),
    (8, [(0x10000, 0x1FFFF)]),
    (5, [(0x20000, 0x3FFFF)]),
    (3, [(0x40000, 0x10FFFF)]),
]


def random_codepoint(rng):
    total = sum(w for w, _ in POOLS)
    r = rng.uniform(0, total)
    for w, ranges in POOLS:
        r -= w
        if r <= 0:
            break
    lo, hi = rng.choice(ranges)
    while True:
        c = rng.randint(lo, hi)
        if not 0xD800 <= c < 0xE000:
            return c


def random_utf8(rng, n):
    return "".join(chr(random_codepoint(rng)) for _ in range(n))


def words_from(text, rng, n):
    if " " in text:
        parts = text.split(" ")
        start = rng.randrange(len(parts))
        return " ".join((parts * 3)[start:start + n])
    start = rng.randrange(len(text))
    return (text * 3)[start:start + n]


def prose(rng):
    if rng.random() < 0.5:
        return words_from(" ".join(ENGLISH), rng, rng.randint(3, 60))
    out = []
    for _ in range(rng.randint(3, 40)):
        w = rng.choice(WORDS)
        if rng.random() < 0.1:
            w = w.capitalize()
        if rng.random() < 0.05:
            w = w.upper()
        out.append(w)
        if rng.random() < 0.1:
            out.append(rng.choice([",", ".", ";", "!", "?", "'s", "n't", " -", ":"]))
    return " ".join(out)


def code(rng):
    parts = [rng.choice(CODE) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        parts = [p.replace("    ", "\t") for p in parts]
    return "".join(parts)


def cjk(rng):
    which = rng.choice([CHINESE, JAPANESE, KOREAN])
    s = words_from(which, rng, rng.randint(2, 80))
    if rng.random() < 0.3:
        s += " " + prose(rng)
    if rng.random() < 0.2:
        s = "".join(chr(rng.choice([rng.randint(0x4E00, 0x9FA5), rng.randint(0x3040, 0x30FF),
                                    rng.randint(0xAC00, 0xD7A3)])) for _ in range(rng.randint(1, 30)))
    return s


def greek_cyrillic(rng):
    s = words_from(rng.choice([GREEK, CYRILLIC]), rng, rng.randint(2, 40))
    if rng.random() < 0.3:
        s += "".join(chr(rng.randint(0x1F00, 0x1FFF)) for _ in range(rng.randint(1, 10)))
    return s


def emoji(rng):
    out = []
    for _ in range(rng.randint(1, 12)):
        out.append(rng.choice(EMOJI))
        if rng.random() < 0.4:
            out.append(rng.choice([" ", "", "!", " and ", "\n", "x"]))
    return "".join(out)


def digits(rng):
    out = []
    for _ in range(rng.randint(1, 8)):
        out.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))))
        out.append(rng.choice(["", " ", ",", ".", "-", "/", ":", "e", "x", "  ", "\n", "١٢٣", "²", "½"]))
    return "".join(out)


def whitespace(rng):
    out = []
    for _ in range(rng.randint(1, 16)):
        out.append("".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6))))
        if rng.random() < 0.6:
            out.append(rng.choice(WORDS + ["x", "1", "!", "中文", "é"]))
    return "".join(out)


def specials(rng):
    out = []
    for _ in range(rng.randint(1, 8)):
        out.append(rng.choice(SPECIALS))
        if rng.random() < 0.6:
            out.append(rng.choice([" ", "", "  ", "\n", "text", " word ", "中", "1", "\t"]))
    return "".join(out)


# Code points whose properties are newer than Unicode 14 (PCRE2 10.42's tables), and others
# where regex engines disagree (U+180E is \s in PCRE2 but not in Oniguruma).
UNICODE_EDGES = [0x1C89, 0x1C8A, 0xA7CB, 0xA7CC, 0xA7CD, 0xA7DA, 0x105C0, 0x10D40, 0x10D49,
                 0x116D0, 0x897, 0xCF3, 0x10D69, 0x2427, 0x2FFC, 0x31EF, 0x1CC00, 0x11F50,
                 0x1E4F0, 0x2EBF0, 0x31350, 0x1B4E, 0x1B7F, 0x180E, 0x200B, 0xFEFF, 0x1F7D,
                 0x1FD3, 0x1FDB, 0x3A9, 0x2126, 0xB5, 0x0, 0x7F, 0xFFFD, 0x10FFFF, 0xE000]


def unicode_edges(rng):
    out = []
    for _ in range(rng.randint(1, 12)):
        out.append(chr(rng.choice(UNICODE_EDGES)))
        if rng.random() < 0.5:
            out.append(rng.choice([" ", "a", "1", "中", "!", "  ", "\n", "é"]))
    return "".join(out)


def random_text(rng):
    return random_utf8(rng, rng.randint(1, 60))


GENERATORS = [(prose, 4), (code, 2), (cjk, 2), (greek_cyrillic, 1), (emoji, 1), (digits, 1),
              (whitespace, 1), (specials, 1), (random_text, 2), (unicode_edges, 1)]


def mixed(rng):
    total = sum(w for _, w in GENERATORS)
    r = rng.uniform(0, total)
    for g, w in GENERATORS:
        r -= w
        if r <= 0:
            return g(rng)
    return prose(rng)


def test_corpus(seed, per_category=200, mixed_count=400):
    rng = random.Random(seed)
    corpus = ["", " ", "a", "\n", "  ", "\u180e", "\ufeff", "1234567890", "🤷🏽‍♀️"]
    for g, _ in GENERATORS:
        corpus.extend(g(rng) for _ in range(per_category))
    for _ in range(mixed_count):
        corpus.append("".join(mixed(rng) for _ in range(rng.randint(2, 5))))
    corpus.append(" " * 3000 + "x" + "\n" * 500)
    corpus.append("a" * 5000)
    corpus.append("0" * 2000)
    return corpus


def training_texts(seed):
    rng = random.Random(seed)
    for _ in range(20000):
        yield mixed(rng)


def bench_text(seed, min_bytes):
    rng = random.Random(seed)
    parts, size = [], 0
    weights = [(prose, 6), (code, 3), (cjk, 2), (greek_cyrillic, 1), (emoji, 1), (digits, 1),
               (whitespace, 1)]
    total = sum(w for _, w in weights)
    while size < min_bytes:
        r = rng.uniform(0, total)
        for g, w in weights:
            r -= w
            if r <= 0:
                break
        s = g(rng) + rng.choice(["\n", " ", "\n\n"])
        parts.append(s)
        size += len(s.encode())
    return "".join(parts)
