"""Medians of bench/compare_llamacpp.sh's alternating rounds, side by side.

Reads OUT/ours-R.json (model_bench), OUT/llama-tg-R.json and OUT/llama-pp-R.json (llama-bench
-o json) and OUT/llama-batched-R.jsonl (llama-batched-bench --output-format jsonl) for R in
1..rounds; writes OUT/compare.md, OUT/compare.json and OUT/compare.png, prints the table, and
with --docs replaces the section of that file between the compare_llamacpp markers.
"""

import argparse
import datetime
import json
import pathlib
import statistics
import sys

BEGIN = "<!-- compare_llamacpp:begin (bench/compare_llamacpp.sh writes this section) -->"
END = "<!-- compare_llamacpp:end -->"


def fail(msg):
    sys.exit(f"compare_llamacpp_report: {msg}")


def load_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def llama_bench_ts(path, n_prompt, n_gen):
    """tokens/s of the llama-bench test with these sizes (one repetition per round)."""
    for test in load_json(path):
        if test.get("n_prompt") == n_prompt and test.get("n_gen") == n_gen:
            return float(test["avg_ts"])
    fail(f"{path}: no test with n_prompt={n_prompt} n_gen={n_gen}")


def batched_tg(path, pl):
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            row = json.loads(line)
            if row.get("pl") == pl:
                return float(row["speed_tg"])
    fail(f"{path}: no row with pl={pl}")


def ours_decode(run, batch):
    for d in run["decode"]:
        if d["batch"] == batch:
            return float(d["tokens_per_s"])
    fail(f"model_bench JSON has no decode batch {batch}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--isa", default="")
    ap.add_argument("--llamacpp", required=True)
    ap.add_argument("--greedy-same", choices=["true", "false"], required=True)
    ap.add_argument("--greedy-ids", default="")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--docs", help="markdown file whose compare_llamacpp section to regenerate")
    ap.add_argument("--weights", default="bf16", help="the weights' format (bf16, q8_0, q4_k_m)")
    ap.add_argument("--file-maker", default="", help="who wrote the quantized GGUF both ran")
    ap.add_argument("--long", default="",
                    help="token counts of the long-context rows (ours-long-N-R.json, "
                         "llama-pp-N-R.json, llama-tg-N-R.json)")
    ap.add_argument("--section-suffix", default="",
                    help="docs section compare_llamacpp_SUFFIX (default: from --dtype)")
    args = ap.parse_args()
    out = pathlib.Path(args.out)

    rows = [  # (key, label, ours(run, round), theirs(round))
        ("decode_b1", "decode, batch 1 (tokens/s)", lambda o, r: ours_decode(o, 1),
         lambda r: llama_bench_ts(out / f"llama-tg-{r}.json", 0, 32)),
        ("prefill_512", "prefill 512 (tokens/s)", lambda o, r: float(o["prefill_tokens_per_s"]),
         lambda r: llama_bench_ts(out / f"llama-pp-{r}.json", 512, 0)),
        ("decode_b8", "batched decode, 8 sequences (tokens/s)", lambda o, r: ours_decode(o, 8),
         lambda r: batched_tg(out / f"llama-batched-{r}.jsonl", 8)),
        ("decode_b32", "batched decode, 32 sequences (tokens/s)", lambda o, r: ours_decode(o, 32),
         lambda r: batched_tg(out / f"llama-batched-{r}.jsonl", 32)),
    ]
    for n in [int(v) for v in args.long.split(",") if v]:
        rows += [
            (f"prefill_{n}", f"prefill {n} (tokens/s)",
             lambda o, r, n=n: float(load_json(out / f"ours-long-{n}-{r}.json")["prefill_tokens_per_s"]),
             lambda r, n=n: llama_bench_ts(out / f"llama-pp-{n}-{r}.json", n, 0)),
            (f"decode_depth_{n}", f"decode at depth {n} (tokens/s)",
             lambda o, r, n=n: ours_decode(load_json(out / f"ours-long-{n}-{r}.json"), 1),
             lambda r, n=n: llama_bench_ts(out / f"llama-tg-{n}-{r}.json", 0, 32)),
        ]
    ours_runs = [load_json(out / f"ours-{r}.json") for r in range(1, args.rounds + 1)]
    bandwidth = statistics.median(o["bandwidth_gbs"] for o in ours_runs)
    bytes_per_token = ours_runs[0]["decode_bytes_per_token"]
    result = {"cpu": args.cpu, "isa": args.isa.split(), "threads": args.threads,
              "layers": args.layers, "rounds": args.rounds, "llamacpp": args.llamacpp,
              "greedy_identical": args.greedy_same == "true", "greedy_ids": args.greedy_ids,
              "read_bandwidth_gbs": bandwidth, "decode_bytes_per_token": bytes_per_token,
              "rows": {}}
    for key, label, ours_of, theirs_of in rows:
        ours = [ours_of(o, r) for r, o in enumerate(ours_runs, start=1)]
        theirs = [theirs_of(r) for r in range(1, args.rounds + 1)]
        result["rows"][key] = {"label": label, "dsv2": ours, "llamacpp": theirs,
                               "dsv2_median": statistics.median(ours),
                               "llamacpp_median": statistics.median(theirs)}
    for key in ("decode_b1",):
        row = result["rows"][key]
        for side in ("dsv2", "llamacpp"):
            row[f"{side}_bandwidth_fraction"] = (
                row[f"{side}_median"] * bytes_per_token / 1e9 / bandwidth if bandwidth else 0)

    dtype_arg = "" if args.dtype == "float32" else f" --dtype {args.dtype}"
    if args.weights != "bf16":
        dtype_arg += f" --weights {args.weights}"
        files = (f"{args.weights.upper()} weights, both engines reading the same GGUF file, "
                 f"written by {args.file_maker}; {args.llamacpp}")
    else:
        files = f"bf16 weights; {args.llamacpp} on the bf16 GGUF its converter wrote"
    lines = [
        f"`bench/compare_llamacpp.sh --rounds {args.rounds} --threads {args.threads} --layers "
        f"{args.layers}{dtype_arg}`, {datetime.date.today().isoformat()}. "
        f"dsv2 in {args.dtype} activations. "
        f"CPU: {args.cpu} ({args.isa.strip() or 'no AVX2/AVX-512/AMX'}), {args.threads} threads; "
        f"{args.layers}-layer V2-Lite-shaped random checkpoint, vocab 129,280; "
        f"{files}; medians of {args.rounds} "
        f"alternating rounds. Greedy tokens from the same 16 prompt ids: "
        f"{'identical' if result['greedy_identical'] else 'DIFFERENT'}.",
        "",
        "| measure | dsv2 | llama.cpp | dsv2 ÷ llama.cpp | median of the rounds' ratios |",
        "|---|---|---|---|---|",
    ]
    for key, label, _, _ in rows:
        row = result["rows"][key]
        ratio = row["dsv2_median"] / row["llamacpp_median"] if row["llamacpp_median"] else 0
        row["ratio"] = ratio
        extra = ""
        if "dsv2_bandwidth_fraction" in row:
            extra = (f" ({100 * row['dsv2_bandwidth_fraction']:.0f}% / "
                     f"{100 * row['llamacpp_bandwidth_fraction']:.0f}% of {bandwidth:.1f} GB/s)")
        # On a machine whose bandwidth drifts, each round's own ratio is the steadier figure.
        row["round_ratio_median"] = statistics.median(
            a / b for a, b in zip(row["dsv2"], row["llamacpp"]) if b > 0)
        lines.append(f"| {label}{extra} | {row['dsv2_median']:.1f} | "
                     f"{row['llamacpp_median']:.1f} | {ratio:.2f} | "
                     f"{row['round_ratio_median']:.2f} |")
    lines.append("")
    lines.append("Per round (dsv2 / llama.cpp, tokens/s): " + "; ".join(
        f"{result['rows'][k]['label'].split(' (')[0]}: " + ", ".join(
            f"{a:.1f}/{b:.1f}" for a, b in zip(result["rows"][k]["dsv2"],
                                               result["rows"][k]["llamacpp"]))
        for k, _, _, _ in rows) + ".")
    table = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(table)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(rows)), 4))
        labels = [label.split(" (")[0].replace("batched decode, ", "decode ")
                  for _, label, _, _ in rows]
        xs = range(len(rows))
        ours = [result["rows"][k]["dsv2_median"] for k, _, _, _ in rows]
        theirs = [result["rows"][k]["llamacpp_median"] for k, _, _, _ in rows]
        ax.bar([x - 0.2 for x in xs], ours, 0.4, label="dsv2")
        ax.bar([x + 0.2 for x in xs], theirs, 0.4, label="llama.cpp")
        ax.set_xticks(list(xs), labels, fontsize=8)
        ax.set_ylabel("tokens/s (median)")
        ax.set_title(f"{args.cpu}, {args.threads} threads, {args.weights} weights", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "compare.png", dpi=100)
    except ImportError:
        print("compare_llamacpp_report: matplotlib missing, no PNG", file=sys.stderr)

    if args.docs:
        path = pathlib.Path(args.docs)
        text = path.read_text()
        png = out / "compare.png"
        picture = ""
        # float32 keeps the section and picture names it always had; another dtype gets its own.
        name = "compare_llamacpp" if args.dtype == "float32" else f"compare_llamacpp_{args.dtype}"
        if args.section_suffix:
            name = f"compare_llamacpp_{args.section_suffix}"
        if png.exists():  # beside the markdown, so the page shows it
            (path.parent / f"{name}.png").write_bytes(png.read_bytes())
            picture = f"\n![dsv2 beside llama.cpp]({name}.png)\n"
        begin = BEGIN.replace("compare_llamacpp:", f"{name}:")
        end = END.replace("compare_llamacpp:", f"{name}:")
        section = f"{begin}\n{table}{picture}{end}"
        if begin in text and end in text:
            text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
        else:
            heading = "CPU engine beside llama.cpp" + (
                "" if args.dtype == "float32" else f", {args.dtype} activations")
            if args.weights != "bf16":
                heading += f", {args.weights.upper()} file by {args.file_maker}"
            text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + section + "\n"
        path.write_text(text)
        print(f"compare_llamacpp_report: regenerated the section of {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
