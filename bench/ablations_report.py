#!/usr/bin/env python3
"""The ablation suite's report (bench/ablations.sh): every run's eval JSON under OUT/runs/STEPS/SEED/
gathered into OUT/ablations.json and OUT/ablations.md (mean, sample standard deviation and each
seed's all-task exact match, per-task means, KL to the teacher, per budget), the paper's three
orderings judged against the seed spread, and OUT/ablations.png (gnuplot, when present).
usage: bench/ablations_report.py OUT_DIR"""
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys

TASKS = ["name", "yesno", "group", "which", "count", "grid"]
# the paper's orderings, worst first (mmMamba, Tables 5-7): each later variant should score higher.
# Placement: the paper's head-interleaved (the first layer of every 4) beat the stacked ones; auto
# (the K layers of largest stage-2 loss) is mmm's and is reported beside them.
ORDERINGS = [
    ("initialisation: scratch < inherit < mimic", lambda k: ["init_scratch", "init_inherit", "init_mimic"]),
    ("stages: 3 only < 2+3 < 1+2+3 (the paper: 2+3 < 1+2+3)", lambda k: ["stages_3", "stages_23", "init_mimic"]),
    ("placement: tail-stacked < head-interleaved", lambda k: ["place_tail-stacked_" + k, "place_head-interleaved_" + k]),
    ("placement, mmm's auto: head-interleaved < auto", lambda k: ["place_head-interleaved_" + k, "place_auto_" + k]),
]
ORDER = ["init_scratch", "init_inherit", "init_mimic", "stages_3", "stages_23", "place_head-interleaved",
         "place_tail-stacked", "place_auto", "count"]


def load(out):
    runs = []
    for path in sorted(glob.glob(os.path.join(out, "runs", "*", "*", "*.eval.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def summarise(runs):
    """{steps: {variant: summary}}; the linear mimic run also stands as count_0, the head-interleaved
    placement at K as count_K."""
    by = {}
    for r in runs:
        names = [r["variant"]]
        if r["variant"] == "init_mimic":
            names.append("count_0")
        if r["variant"].startswith("place_head-interleaved_"):
            names.append("count_" + r["variant"].rsplit("_", 1)[1])
        for n in names:
            by.setdefault(r["steps"], {}).setdefault(n, []).append(r)
    table = {}
    for steps, variants in by.items():
        for name, rs in variants.items():
            acc = [r["accuracy"] for r in sorted(rs, key=lambda r: r["seed"])]
            table.setdefault(steps, {})[name] = {
                "seeds": [r["seed"] for r in sorted(rs, key=lambda r: r["seed"])],
                "accuracy": acc,
                "mean": statistics.mean(acc),
                "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "kl": statistics.mean(r["kl"] for r in rs),
                "tasks": {t: statistics.mean(r["tasks"][t]["accuracy"] for r in rs) for t in TASKS
                          if all(t in r["tasks"] for r in rs)},
            }
    return table


def judge(table, chain):
    """Whether the means rise along chain, and whether each step is larger than the two variants'
    standard deviations together."""
    rows = [table.get(v) for v in chain]
    if any(r is None for r in rows):
        return "not run"
    rises = all(b["mean"] > a["mean"] for a, b in zip(rows, rows[1:]))
    apart = all(abs(b["mean"] - a["mean"]) > a["sd"] + b["sd"] for a, b in zip(rows, rows[1:]))
    means = ", ".join("%s %.3f" % (v, r["mean"]) for v, r in zip(chain, rows))
    return "%s, %s the seed spread (%s)" % ("holds" if rises else "does not hold",
                                          "every step wider than" if apart else "within", means)


def markdown(table):
    lines = []
    for steps in sorted(table):
        t = table[steps]
        lines.append("### %d steps per stage\n" % steps)
        lines.append("| variant | all (mean ± sd) | seeds | " + " | ".join(TASKS) + " | KL |")
        lines.append("|---|---:|---|" + "---:|" * len(TASKS) + "---:|")
        for name in sorted(t, key=order_key):
            r = t[name]
            lines.append("| %s | %.3f ± %.3f | %s | %s | %.3f |" % (
                name, r["mean"], r["sd"], ", ".join("%.3f" % a for a in r["accuracy"]),
                " | ".join("%.3f" % r["tasks"].get(x, float("nan")) for x in TASKS), r["kl"]))
        lines.append("")
        placed = [v for v in t if v.startswith("place_")]
        k = placed[0].rsplit("_", 1)[1] if placed else "?"
        for title, chain in ORDERINGS:
            lines.append("- %s: %s" % (title.replace("placement", "placement (K = %s)" % k, 1), judge(t, chain(k))))
        lines.append("")
    return "\n".join(lines)


def order_key(name):
    i = next((i for i, p in enumerate(ORDER) if name.startswith(p)), len(ORDER))
    tail = name.rsplit("_", 1)[1]
    return (i, int(tail) if tail.isdigit() else 0, name)


def plot(table, out):
    names = sorted({n for t in table.values() for n in t}, key=order_key)
    dat = os.path.join(out, "ablations.png.dat")
    with open(dat, "w") as f:
        for i, n in enumerate(names):
            f.write("%d %s" % (i, n))
            for steps in sorted(table):
                r = table[steps].get(n)
                f.write(" %.4f %.4f" % ((r["mean"], r["sd"]) if r else (float("nan"), 0)))
            f.write("\n")
    series = ", ".join("'%s' using ($1%+.2f):%d:%d:xtic(2) with yerrorbars pt 7 title '%d steps per stage'"
                       % (dat, 0.15 * (j - (len(table) - 1) / 2), 3 + 2 * j, 4 + 2 * j, steps)
                       for j, steps in enumerate(sorted(table)))
    gp = os.path.join(out, "ablations.png.gp")
    with open(gp, "w") as f:
        f.write("set terminal pngcairo size 1100,500\nset output '%s'\n" % os.path.join(out, "ablations.png"))
        f.write("set title 'Ablations: all-task exact match, mean and standard deviation over seeds'\n")
        f.write("set ylabel 'exact match (test split)'\nset xtics rotate by -35\nset grid ytics\n")
        f.write("set key bottom right\nset xrange [-0.5:%d.5]\nplot %s\n" % (len(names) - 1, series))
    if shutil.which("gnuplot"):
        subprocess.run(["gnuplot", gp], check=False)
    else:
        print("no plot: gnuplot is not installed (%s and its data are written)" % gp)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    table = summarise(load(out))
    if not table:
        sys.exit("ablations report: no finished runs under %s/runs" % out)
    with open(os.path.join(out, "ablations.json"), "w") as f:
        json.dump({str(k): v for k, v in table.items()}, f, indent=1)
    md = markdown(table)
    with open(os.path.join(out, "ablations.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    plot(table, out)


if __name__ == "__main__":
    main()
