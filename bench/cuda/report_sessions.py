"""Joins `mmm bench --sessions --json` and `baseline_serve.py --json` of one device call into
bench/results/: a JSON of rows (ours, the baseline's, the ratio), a Markdown table, and a plot of
tokens/s against the number of sequences decoding together (gnuplot, when installed).

usage: python3 report_sessions.py MMM.json TORCH.json --device NAME --commit REV --out bench/results/gpu_sessions_DATE
"""
import argparse
import datetime
import json
import shutil
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mmm")
    ap.add_argument("torch")
    ap.add_argument("--device", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--out", required=True, help="path without extension")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    ours = json.load(open(args.mmm))["results"]
    base = {(r["model"], r["context"], r["sessions"]): r for r in json.load(open(args.torch))["rows"]}
    alone = {(r["model"], r["context"]): r["tokens_per_s"] for r in ours if r["sessions"] == 1}
    rows = []
    for r in ours:
        b = base.get((r["model"], r["context"], r["sessions"]))
        rows.append(dict(model=r["model"], context=r["context"], sessions=r["sessions"], admitted=r["admitted"],
                         mmm_step_ms=r["step_ms"], mmm_tokens_per_s=r["tokens_per_s"],
                         mmm_vs_alone=r["tokens_per_s"] / alone[(r["model"], r["context"])]
                         if (r["model"], r["context"]) in alone else None,
                         torch_admitted=b["admitted"] if b else None, torch_step_ms=b["step_ms"] if b else None,
                         torch_tokens_per_s=b["tokens_per_s"] if b else None,
                         ratio=r["tokens_per_s"] / b["tokens_per_s"] if b else None,
                         mmm_gpu_in_use_mb=r.get("gpu_in_use_mb"), mmm_prefill_ms=r.get("prefill_ms")))
    doc = dict(benchmark="gpu_sessions", device=args.device, date=datetime.date.today().isoformat(), commit=args.commit,
               baseline="PyTorch batched decode, bf16, SDPA attention, mamba_ssm selective_state_update (Triton), "
                        "CUDA graph (bench/cuda/baseline_serve.py)", note=args.note, rows=rows)
    json.dump(doc, open(args.out + ".json", "w"), indent=1)
    fmt = lambda v, f: "-" if v is None else f.format(v)
    with open(args.out + ".md", "w") as f:
        f.write(f"# Sequences decoding together, {args.device}, commit {args.commit}\n\n{args.note}\n\n"
                "| model | context | sessions | admitted | mmm step ms | mmm tokens/s | × alone | PyTorch tokens/s | mmm / PyTorch |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        for r in rows:
            f.write(f"| {r['model']} | {r['context'] // 1024}K | {r['sessions']} | {r['admitted']} | {r['mmm_step_ms']:.2f} | "
                    f"{r['mmm_tokens_per_s']:.0f} | {fmt(r['mmm_vs_alone'], '{:.1f}')} | "
                    f"{fmt(r['torch_tokens_per_s'], '{:.0f}')} | {fmt(r['ratio'], '{:.2f}')} |\n")
    print(open(args.out + ".md").read())
    if not shutil.which("gnuplot"):
        return
    dat, series = args.out + ".dat", []
    with open(dat, "w") as f:
        for key in dict.fromkeys((r["model"], r["context"]) for r in rows):
            for prog, col in (("mmm", "mmm_tokens_per_s"), ("PyTorch", "torch_tokens_per_s")):
                pts = [(r["admitted"], r[col]) for r in rows if (r["model"], r["context"]) == key and r[col]]
                if pts:
                    f.write("".join(f"{n} {v}\n" for n, v in pts) + "\n\n")
                    series.append((prog, key))
    plots = ", ".join(f"'{dat}' index {i} u 1:2 w lp lw 2 lc {1 + list(dict.fromkeys(k for _, k in series)).index(key)} "
                      f"dt {1 if prog == 'mmm' else 2} t '{prog} {key[0]} {key[1] // 1024}K'"
                      for i, (prog, key) in enumerate(series))
    gp = (f"set terminal pngcairo noenhanced size 1000,560\nset output '{args.out}.png'\nset logscale xy 2\nset grid\n"
          f"set key outside right\nset title '{args.device}: sequences decoding together (HoVLE-2.6B dims, bf16)'\n"
          f"set xlabel 'sequences admitted'\nset ylabel 'decode tokens/s, all sequences'\nplot {plots}\n")
    subprocess.run(["gnuplot"], input=gp, text=True, check=False)
    import os
    os.remove(dat)


if __name__ == "__main__":
    main()
