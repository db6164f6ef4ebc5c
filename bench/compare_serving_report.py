#!/usr/bin/env python3
"""Report of bench/compare_serving.sh: reads OUT/runs/ROUND/ (aiperf's profile_export_aiperf.json
per workload and server, the example's JSON per server), prints a markdown table of the medians
over the rounds and writes OUT/serving.{md,json,png}; with --docs replaces that file's
compare_serving section. Workloads and servers that did not run are left out."""
import argparse
import json
import os
import statistics
import sys

BEGIN = "<!-- compare_serving:begin (bench/compare_serving.sh writes this section) -->"
END = "<!-- compare_serving:end -->"
SERVERS = [("dsv2", "dsv2, prefix caching on"), ("dsv2-nocache", "dsv2, prefix caching off"),
           ("llamacpp", "llama-server")]
WORKLOADS = [("random-c1", "random, 1 stream"), ("random-c8", "random, 8 streams"),
             ("random-c32", "random, 32 streams"), ("shared-c8", "shared prefix, 8 streams"),
             ("shared-c32", "shared prefix, 32 streams"), ("multiturn-c8", "multi-turn, 8 streams"),
             ("multiturn-c32", "multi-turn, 32 streams")]


def fail(msg):
    sys.exit(f"compare_serving_report: {msg}")


def stat(d, key, which):
    v = d.get(key) or {}
    return v.get(which)


def load_run(path):
    if not os.path.exists(path):
        fail(f"{path} is missing (did aiperf fail? see aiperf.log beside it)")
    with open(path) as f:
        d = json.load(f)
    errors = stat(d, "request_error_rate", "avg") or 0
    prompt = stat(d, "total_usage_prompt_tokens", "avg") or 0
    cached = stat(d, "total_usage_prompt_cache_read_tokens", "avg") or 0
    return {
        "requests": stat(d, "completed_request_count", "avg"),
        "errors_pct": errors,
        "output_tps": stat(d, "output_token_throughput", "avg"),
        "ttft_p50": stat(d, "time_to_first_token", "p50"),
        "ttft_p99": stat(d, "time_to_first_token", "p99"),
        "itl_p50": stat(d, "inter_token_latency", "p50"),
        "itl_p99": stat(d, "inter_token_latency", "p99"),
        "prompt_tokens": prompt,
        "cached_pct": 100.0 * cached / prompt if prompt else 0.0,
        "duration_s": stat(d, "benchmark_duration", "avg"),
    }


def median_run(runs):
    """The per-metric medians of a list of load_run results."""
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if r[k] is not None]
        out[k] = statistics.median(vals) if vals else None
    return out


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, digits=0):
    return "—" if x is None else f"{x:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--llamacpp", required=True)
    ap.add_argument("--aiperf", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--docs")
    a = ap.parse_args()
    runs = os.path.join(a.out, "runs")

    rounds = [os.path.join(runs, str(r)) for r in range(1, a.rounds + 1)]
    servers = [(s, l) for s, l in SERVERS if os.path.isdir(os.path.join(rounds[0], "example", s)) or
               any(os.path.isdir(os.path.join(rounds[0], w, s)) for w, _ in WORKLOADS)]
    workloads = [(w, l) for w, l in WORKLOADS if os.path.isdir(os.path.join(rounds[0], w))]
    example = {}
    for name, _ in servers:
        files = [os.path.join(r, "example", name, "example.json") for r in rounds]
        if not all(os.path.exists(f) for f in files):
            continue
        firsts, seconds, cached = [], [], []
        for f in files:
            with open(f) as fh:
                e = json.load(fh)
            firsts += e["first_ms"]
            seconds += e["second_ms"]
            cached += e["cached_tokens"]
        example[name] = {"first_ms": statistics.median(firsts),
                         "second_ms": statistics.median(seconds), "pairs": len(firsts),
                         "cached_tokens": sorted(set(c for c in cached if c is not None)),
                         "all_first_ms": firsts, "all_second_ms": seconds}
    results = {w: {s: median_run([load_run(os.path.join(r, w, s, "profile_export_aiperf.json"))
                                  for r in rounds])
                   for s, _ in servers} for w, _ in workloads}

    lines = []
    rounds_text = (f"medians of {a.rounds} rounds, the servers' order alternating from one run to "
                   f"the next" if a.rounds > 1 else
                   "the servers' order alternating from one workload to the next")
    lines.append(f"Machine: {a.cpu}; each server {a.threads} threads, aiperf {a.aiperf} beside it. "
                 f"Weights: a random {a.layers}-layer V2-Lite-shaped checkpoint in bf16 (ours) and "
                 f"its bf16 GGUF ({a.llamacpp}'s llama-server). Each run on freshly started "
                 f"servers, {rounds_text}; chat completions, streamed, full-length "
                 f"answers (ignore_eos).{' QUICK RUN: a few requests each, not a measurement.' if a.quick else ''}\n")
    if example:
        pairs = max(e["pairs"] for e in example.values())
        lines.append("**The example** (a 905-token prompt, then one sharing its first 900 tokens, "
                     f"one request at a time; medians of {pairs} pairs; TTFT in ms):\n")
        lines.append("| server | 1st request TTFT | 2nd request TTFT | 2nd: prompt tokens from cache |")
        lines.append("|---|---|---|---|")
        for name, label in servers:
            if name not in example:
                continue
            e = example[name]
            lines.append(f"| {label} | {fmt(e['first_ms'])} | {fmt(e['second_ms'])} | "
                         f"{', '.join(str(c) for c in e['cached_tokens'])} |")
        if "dsv2" in example and "llamacpp" in example:
            r = example["dsv2"]["second_ms"] / example["llamacpp"]["second_ms"]
            lines.append(f"\n2nd request, ours / llama-server: **{r:.2f}x** (target ≤ 1.2x).\n")
        else:
            lines.append("")

    summary = {}
    if workloads:
        lines.append("**Workloads** (output tokens/s over the run; TTFT and ITL in ms; cached: share "
                     "of the prompt tokens the server reported as served from its cache):\n")
        lines.append("| workload | server | requests | output tok/s | TTFT p50 | TTFT p99 | ITL p50 | "
                     "ITL p99 | cached |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for w, wlabel in workloads:
            for s, slabel in servers:
                r = results[w][s]
                err = f" ({r['errors_pct']:.0f}% errors)" if r["errors_pct"] else ""
                lines.append(f"| {wlabel} | {slabel} | {fmt(r['requests'])}{err} | "
                             f"{fmt(r['output_tps'], 1)} | {fmt(r['ttft_p50'])} | {fmt(r['ttft_p99'])} | "
                             f"{fmt(r['itl_p50'], 1)} | {fmt(r['itl_p99'], 1)} | {r['cached_pct']:.0f}% |")
        lines.append("")
        lines.append("| workload | TTFT p50, caching off / on | throughput, caching on / off | "
                     "throughput, ours (on) / llama-server |")
        lines.append("|---|---|---|---|")
        for w, wlabel in workloads:
            get = lambda s, k: results[w][s][k] if s in results[w] else None  # noqa: E731
            ttft_gain = ratio(get("dsv2-nocache", "ttft_p50"), get("dsv2", "ttft_p50"))
            cost = ratio(get("dsv2", "output_tps"), get("dsv2-nocache", "output_tps"))
            vs_llama = ratio(get("dsv2", "output_tps"), get("llamacpp", "output_tps"))
            summary[w] = {"ttft_off_over_on": ttft_gain, "tps_on_over_off": cost,
                          "tps_ours_over_llamacpp": vs_llama}
            lines.append(f"| {wlabel} | {fmt(ttft_gain, 2)}x | {fmt(cost, 3)}x | {fmt(vs_llama, 2)}x |")
    table = "\n".join(lines) + "\n"
    print(table)

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "serving.md"), "w") as f:
        f.write(table)
    with open(os.path.join(a.out, "serving.json"), "w") as f:
        json.dump({"example": example, "workloads": results, "summary": summary}, f, indent=1)

    png = os.path.join(a.out, "serving.png") if workloads else None
    try:
        if png is None:
            raise ImportError("no workloads to draw")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
        width = 0.27
        xs = range(len(workloads))
        for k, (s, slabel) in enumerate(servers):
            tps = [results[w][s]["output_tps"] or 0 for w, _ in workloads]
            ttft = [results[w][s]["ttft_p50"] or 0 for w, _ in workloads]
            axes[0].bar([x + (k - 1) * width for x in xs], tps, width, label=slabel)
            axes[1].bar([x + (k - 1) * width for x in xs], ttft, width, label=slabel)
        for ax, title in ((axes[0], "output tokens/s (higher is better)"),
                          (axes[1], "TTFT p50, ms, log scale (lower is better)")):
            ax.set_xticks(list(xs))
            ax.set_xticklabels([w for w, _ in workloads], rotation=20)
            ax.set_title(title)
        axes[1].set_yscale("log")
        axes[0].legend()
        fig.suptitle(f"Serving workloads, aiperf {a.aiperf}: dsv2 vs llama-server ({a.cpu})",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(png, dpi=90)
    except ImportError:
        png = None

    if a.docs:
        with open(a.docs) as f:
            text = f.read()
        picture = "\n![serving workloads](serving.png)\n" if png else ""
        section = f"{BEGIN}\n{table}{picture}{END}"
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n## Serving workloads beside llama-server\n\n" + \
                "`bench/compare_serving.sh`\n\n" + section + "\n"
        with open(a.docs, "w") as f:
            f.write(text)
        if png:
            import shutil
            shutil.copy(png, os.path.join(os.path.dirname(a.docs), "serving.png"))


if __name__ == "__main__":
    main()
