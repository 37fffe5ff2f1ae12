#!/usr/bin/env python3
"""Medians of compare.sh's samples, as JSON (bench/results/) and a Markdown table.

samples: lines "PROGRAM KIND CONTEXT METRIC VALUE", PROGRAM mmm (fp32 weights), mmm_int8,
llama_f32 or llama_q8_0,
METRIC decode_ms (ms per token) or prefill_tps (tokens per second). meta: a JSON object
(device, date, commits, command, ...) copied into the output."""
import argparse
import json
import statistics
from collections import defaultdict

BASELINES = ("llama_f32", "llama_q8_0")
ARCH = {"teacher": "llama", "hybrid": "nemotron_h", "linear": "nemotron_h, no attention"}


def ctx_label(c):
    return f"{c // 1024}K" if c % 1024 == 0 else str(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("samples")
    ap.add_argument("meta")
    ap.add_argument("json_out")
    ap.add_argument("md_out")
    a = ap.parse_args()
    s = defaultdict(list)
    with open(a.samples) as f:
        for line in f:
            prog, kind, ctx, metric, value = line.split()
            s[(metric, kind, int(ctx), prog)].append(float(value))
    with open(a.meta) as f:
        meta = json.load(f)

    rows = []
    for (metric, kind, ctx) in sorted({k[:3] for k in s}, key=lambda k: (k[0], list(ARCH).index(k[1]), k[2])):
        if (metric, kind, ctx, "mmm") not in s:
            continue
        ours = statistics.median(s[(metric, kind, ctx, "mmm")])
        row = {"model": kind, "metric": metric, "context": ctx, "ours": round(ours, 3),
               "samples": {p: s[(metric, kind, ctx, p)] for p in ("mmm", "mmm_int8") + BASELINES
                           if (metric, kind, ctx, p) in s}}
        int8 = statistics.median(s[(metric, kind, ctx, "mmm_int8")]) if (metric, kind, ctx, "mmm_int8") in s else None
        if int8 is not None:
            row["ours_int8"] = round(int8, 3)
        for p in BASELINES:
            if (metric, kind, ctx, p) in s:
                base = statistics.median(s[(metric, kind, ctx, p)])
                # ratio > 1: mmm slower (ms per token) or mmm faster (tokens per second)
                row["baseline_" + p[6:]] = round(base, 3)
                row["ratio_" + p[6:]] = round(ours / base, 3)
                if int8 is not None:
                    row["ratio_int8_" + p[6:]] = round(int8 / base, 3)
        rows.append(row)
    with open(a.json_out, "w") as f:
        json.dump({**meta, "results": rows}, f, indent=1)
        f.write("\n")

    def cell(r, key):
        return f"{r[key]:.1f}" if key in r else "–"

    out = [f"Machine: {meta['device']}; {meta['date']}; mmm {meta['mmm_commit']}, llama.cpp {meta['llama_cpp_commit']}; "
           f"{meta['threads']} thread{'s' if meta['threads'] > 1 else ''}, medians of {meta['reps']} A/B-interleaved runs"
           f"{', %d busy processes throughout' % meta['busy_processes'] if meta.get('busy_processes') else ''}; "
           f"dims {meta['dims']}; load average "
           f"{meta['load_before']} before, {meta['load_after']} after.", "",
           "| model (llama.cpp arch) | context | mmm f32 | mmm int8 | llama.cpp f32 | llama.cpp q8_0 | mmm f32 / llama.cpp f32 "
           "| mmm int8 / llama.cpp q8_0 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for metric, title in (("decode_ms", "decode ms/token"), ("prefill_tps", "prefill tokens/s")):
        for r in (r for r in rows if r["metric"] == metric):
            ratio = lambda k: f"{r[k]:.2f}" if k in r else "–"
            out.append(f"| {r['model']} ({ARCH[r['model']]}), {title} | {ctx_label(r['context'])} | {r['ours']:.1f} | "
                       f"{cell(r, 'ours_int8')} | {cell(r, 'baseline_f32')} | {cell(r, 'baseline_q8_0')} | "
                       f"{ratio('ratio_f32')} | {ratio('ratio_int8_q8_0')} |")
    with open(a.md_out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
