#!/usr/bin/env python3
"""Per-kernel time of a run profiled by Nsight Compute (ncu --csv --page raw with the metric
gpu__time_duration.sum): kernels grouped by name, total and per-launch time, share of the sum.

    python3 bench/cuda/kernel_summary.py profile.csv [--divide N] [--top K]

--divide N reports per step when the profile covers N identical steps."""
import argparse
import collections
import csv
import re
import sys


def short(name):
    """The kernel's name without template arguments and parameter list."""
    name = re.sub(r"\(.*$", "", name)
    depth, out = 0, []
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    name = "".join(out).strip()
    return name.split(" ")[-1] or name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--divide", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own messages are not CSV rows
    rows = list(csv.reader(lines))
    if not rows:
        sys.exit(f"{args.csv}: no kernel rows (did ncu profile anything?)")
    head = rows[0]
    try:
        name_col, time_col = head.index("Kernel Name"), head.index("gpu__time_duration.sum")
    except ValueError:
        sys.exit(f"{args.csv}: needs the columns 'Kernel Name' and 'gpu__time_duration.sum'")
    unit = rows[1][time_col] if len(rows) > 1 else "ns"
    scale = {"ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "nsecond": 1e-3}.get(unit, 1e-3)
    total, count = collections.Counter(), collections.Counter()
    for r in rows[1:]:
        try:
            t = float(r[time_col].replace(",", "")) * scale
        except (ValueError, IndexError):
            continue
        k = short(r[name_col])
        total[k] += t
        count[k] += 1
    s = sum(total.values())
    d = args.divide
    print(f"{sum(count.values()) / d:.0f} kernels, {s / d / 1e3:.2f} ms of kernel time per step "
          f"(each kernel timed alone)")
    print(f"{'kernel':<60} {'launches':>9} {'ms':>9} {'us/launch':>10} {'share':>7}")
    for k, t in total.most_common(args.top):
        print(f"{k[:60]:<60} {count[k] / d:>9.0f} {t / d / 1e3:>9.3f} {t / count[k]:>10.1f} {100 * t / s:>6.1f}%")


if __name__ == "__main__":
    main()
