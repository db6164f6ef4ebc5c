#!/usr/bin/env python3
"""The bookkeeping of scripts/gpu-check.sh run: stage records, the summary files, the rows a
stage adds from its programs' JSON, and gtest verdicts. Standard library only (it runs on the
GPU machine's Python).

  record RESULTS NAME STATUS SECONDS ALLOT DETAIL ROWS_TSV   append one stage to RESULTS
  summarize RESULTS OUT ELAPSED BUDGET N_STAGES              rewrite OUT/summary.{json,md}
  print SUMMARY_JSON compact|full|verdict                    print it (verdict: exit 1 unless
                                                             every stage passed)
  gtest-verdict LOG RC NAME          "pass|fail NAME: 12 passed, 0 skipped, 0 failed"
  bandwidth-rows JSON | bench-rows JSON | load-rows JSON LABEL | ep-rows STANDALONE EP
"""
import json
import os
import re
import sys


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def record(results, name, status, seconds, allot, detail, rows_tsv):
    rows = []
    if os.path.exists(rows_tsv):
        with open(rows_tsv) as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    entry = {"stage": name, "status": status, "seconds": int(seconds), "allotted": int(allot),
             "detail": detail, "rows": rows}
    with open(results, "a") as f:
        f.write(json.dumps(entry) + "\n")


def summarize(results, out, elapsed, budget, n_stages):
    with open(results) as f:
        stages = [json.loads(line) for line in f if line.strip()]
    done = len(stages)
    n_stages = int(n_stages)
    statuses = [s["status"] for s in stages]
    if done < n_stages:
        verdict = "incomplete"
    elif all(s == "pass" for s in statuses):
        verdict = "pass"
    else:
        verdict = "fail"
    summary = {"verdict": verdict, "stages_done": done, "stages_total": n_stages,
               "elapsed_s": int(elapsed), "budget_s": int(budget), "stages": stages}
    write_atomic(os.path.join(out, "summary.json"), json.dumps(summary, indent=1) + "\n")
    md = [f"# gpu-check: {verdict} ({done} of {n_stages} stages, {elapsed} s of a {budget} s "
          "budget)", "", "| stage | status | s | detail |", "|---|---|---|---|"]
    for s in stages:
        detail = s["detail"].replace("|", "/")
        md.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {detail} |")
    rows = [r for s in stages for r in s["rows"]]
    if rows:
        md += ["", "| measure | value | note |", "|---|---|---|"]
        for r in rows:
            r = (r + ["", "", ""])[:3]
            md.append("| " + " | ".join(x.replace("|", "/") for x in r) + " |")
    write_atomic(os.path.join(out, "summary.md"), "\n".join(md) + "\n")


def print_summary(path, how):
    with open(path) as f:
        s = json.load(f)
    if how == "verdict":
        print(f"gpu-check: verdict {s['verdict']}")
        return 0 if s["verdict"] == "pass" else 1
    if how == "compact":
        print(f"gpu-check: [{s['stages_done']}/{s['stages_total']}] {s['elapsed_s']} s of "
              f"{s['budget_s']}")
        for st in s["stages"]:
            d = st["detail"]
            d = d if len(d) <= 110 else d[:107] + "..."
            print(f"  {st['stage']:<16}{st['status']:<8}{st['seconds']:>4} s  {d}")
        return 0
    with open(os.path.join(os.path.dirname(path), "summary.md")) as f:
        print(f.read(), end="")
    return 0


def gtest_verdict(log, rc, name):
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    def count(word):
        m = re.findall(r"^\[\s+" + word + r"\s+\] (\d+) tests?", text, re.M)
        return int(m[-1]) if m else 0
    passed, skipped, failed = count("PASSED"), count("SKIPPED"), count("FAILED")
    rc = int(rc)
    words = f"{passed} passed, {skipped} skipped, {failed} failed"
    first = re.findall(r"^\[\s+FAILED\s+\] ([^\s,]+\.[^\s,]+)", text, re.M)
    why = []
    if rc == 124 or rc == 137:
        why.append("timed out")
    elif rc != 0 and failed == 0:
        last = [line for line in text.splitlines() if line.strip()]
        why.append(f"exit {rc}" + (f": {last[-1][:120]}" if last else ""))
    if skipped:
        why.append("a skip on a GPU machine is a failure")
    if passed == 0 and rc == 0:
        why.append("no test ran")
    if first:
        why.append("first failed: " + ", ".join(dict.fromkeys(first))[:160])
    ok = rc == 0 and skipped == 0 and failed == 0 and passed > 0
    print(("pass " if ok else "fail ") + f"{name}: {words}" + (" (" + "; ".join(why) + ")"
                                                             if why else ""))
    return 0


def load(path):
    with open(path) as f:
        return json.load(f)


def tsv(*cells):
    print("\t".join(str(c) for c in cells))


def bandwidth_rows(path):
    b = load(path)
    tsv("device copy bandwidth", f"{b['bandwidth_gbs']:.0f} GB/s", b.get("device", ""))


def bench_rows(path):
    b = load(path)
    bw = b["bandwidth_gbs"]
    roof = bw * 1e9 / b["decode_bytes_per_token"] if b["decode_bytes_per_token"] else 0
    targets = {1: None, 128: "target >= 10,000", 256: "target >= 18,000"}
    for d in b["decode"]:
        note = ""
        if d["batch"] == 1 and roof:
            note = f"{100 * d['tokens_per_s'] / roof:.0f}% of roofline ({roof:.0f} tok/s); target >= 50%"
        elif targets.get(d["batch"]):
            note = targets[d["batch"]]
        path_name = "graphed + summaries" if d.get("graphed") else "eager"
        tsv(f"decode batch {d['batch']} ({path_name})", f"{d['tokens_per_s']:,.0f} tok/s", note)
        if d.get("graphed"):
            tsv(f"  eager + full logits, batch {d['batch']}",
                f"{d['eager_tokens_per_s']:,.0f} tok/s",
                f"graphed is {d['tokens_per_s'] / d['eager_tokens_per_s']:.2f}x eager")
    tsv(f"prefill {b['prefill_tokens']} tokens", f"{b['prefill_tokens_per_s']:,.0f} tok/s",
        "target >= 20,000")


def load_rows(path, label):
    lv = load(path)["levels"][-1]
    tsv(label, f"{lv['output_tokens_per_s']:,.0f} out tok/s",
        f"{lv['errors']} errors; target >= 5,000" if "64" in label else f"{lv['errors']} errors")
    tsv("  TTFT p50 / p99", f"{lv['ttft_ms']['p50']:.0f} / {lv['ttft_ms']['p99']:.0f} ms")
    tsv("  ITL p50 / p99", f"{lv['itl_ms']['p50']:.1f} / {lv['itl_ms']['p99']:.1f} ms")


def ep_rows(standalone, ep):
    s, e = load(standalone)["levels"][-1], load(ep)["levels"][-1]
    ratio = e["output_tokens_per_s"] / s["output_tokens_per_s"] if s["output_tokens_per_s"] else 0
    tsv("EP checkpoint standalone, 64 streams", f"{s['output_tokens_per_s']:,.0f} out tok/s",
        f"{s['errors']} errors")
    tsv("EP coordinator + 2 workers (TCP, one GPU)", f"{e['output_tokens_per_s']:,.0f} out tok/s",
        f"{ratio:.2f}x standalone; target >= 0.7x; {e['errors']} errors")


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "record":
        record(*args)
    elif cmd == "summarize":
        summarize(*args)
    elif cmd == "print":
        return print_summary(*args)
    elif cmd == "gtest-verdict":
        return gtest_verdict(*args)
    elif cmd == "bandwidth-rows":
        bandwidth_rows(*args)
    elif cmd == "bench-rows":
        bench_rows(*args)
    elif cmd == "load-rows":
        load_rows(*args)
    elif cmd == "ep-rows":
        ep_rows(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
