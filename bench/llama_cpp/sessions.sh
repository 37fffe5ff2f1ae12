#!/bin/bash
# Serving many sequences at once on the CPU: mmm's pool (`mmm bench --sessions`) against llama.cpp's
# `llama-batched-bench` (parallel sequences decoding together), on the GGUF copies of the same
# models that compare.sh writes (run it first: its work folder holds them), at one context.
# llama.cpp prefills every sequence's prompt for real (-npp, not shared: its recurrent models
# refuse a shared prompt); mmm fills each sequence's caches and states with a synthetic context of
# the same length (a decode step costs the same whatever the earlier tokens were). The aggregate
# decode rate (tokens/s of all sequences together) is compared; results into bench/results/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
parent=$(dirname "$root")
sessions=1,4,16,64 context=1024 threads=2 steps=16 kinds=teacher,hybrid,linear
work=${LLAMA_CPP_WORK:-$parent/llama-work}
build=${LLAMA_CPP_BUILD:-$parent/llama.cpp-build}
mmm=${MMM_BIN:-$root/build/mmm}
out=$root/bench/results/cpu_sessions_$(date -u +%Y-%m-%d).json

usage() {
    echo "usage: bench/llama_cpp/sessions.sh [--sessions LIST] [--context N] [--threads N] [--kinds LIST] [--out FILE.json]"
    echo "  LLAMA_CPP_WORK (default $work) holds gguf/<kind>-f32.gguf; LLAMA_CPP_BUILD (default $build)"
}
while [ $# -gt 0 ]; do
    case $1 in
    --sessions) sessions=$2; shift 2 ;;
    --context) context=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
bench=$build/bin/llama-batched-bench
if [ ! -x "$bench" ]; then
    if [ -d "$build" ] && cmake --build "$build" --target llama-batched-bench -j"$(nproc)" > /dev/null; then :; else
        echo "SKIP: no llama.cpp build with llama-batched-bench in $build (run compare.sh first)"
        exit 0
    fi
fi
largest=$(tr ',' '\n' <<< "$sessions" | sort -n | tail -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for kind in ${kinds//,/ }; do
    gguf=$work/gguf/$kind-f32.gguf
    [ -f "$gguf" ] || { echo "SKIP $kind: no $gguf (run compare.sh first)"; continue; }
    echo "== llama.cpp $kind"
    "$bench" -m "$gguf" -c $(((context + steps) * largest)) -b 2048 -ub 512 -npp "$context" -ntg "$steps" \
        -npl "$sessions" -t "$threads" 2>&1 | grep '^|' | tee "$tmp/llama_$kind.txt"
    echo "== mmm $kind"
    OMP_NUM_THREADS=$threads "$mmm" bench --sessions "$sessions" --contexts "$context" --kinds "$kind" --steps "$steps" \
        --prefill-max "$context" --json "$tmp/mmm_$kind.json" | tee "$tmp/mmm_$kind.txt"
done
commit=$(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- src include || echo +dirty)
python3 - "$tmp" "$out" "$context" "$threads" "$commit" <<'EOF'
import datetime, glob, json, os, platform, sys
tmp, out, context, threads, commit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = []
for path in sorted(glob.glob(os.path.join(tmp, "mmm_*.json"))):
    kind = os.path.basename(path)[4:-5]
    llama = {}
    lp = os.path.join(tmp, f"llama_{kind}.txt")
    if os.path.exists(lp):
        for line in open(lp):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 10 and cells[2].isdigit():
                llama[int(cells[2])] = dict(prefill_tps=float(cells[5]), decode_tps=float(cells[7]))
    for r in json.load(open(path))["results"]:
        l = llama.get(r["sessions"], {})
        rows.append(dict(model=kind, context=context, sessions=r["sessions"], admitted=r["admitted"],
                         mmm_step_ms=r["step_ms"], mmm_tokens_per_s=r["tokens_per_s"],
                         llama_cpp_tokens_per_s=l.get("decode_tps"),
                         ratio=r["tokens_per_s"] / l["decode_tps"] if l.get("decode_tps") else None,
                         mmm_prefill_ms=r.get("prefill_ms"), llama_cpp_prefill_tps=l.get("prefill_tps")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
doc = dict(benchmark="cpu_sessions", device=cpu, threads=threads, date=datetime.date.today().isoformat(), commit=commit,
           baseline="llama.cpp llama-batched-bench (f32 GGUF; teacher as llama, hybrid as nemotron_h, linear as mamba2)",
           results=rows)
json.dump(doc, open(out, "w"), indent=1)
md = out[:-5] + ".md"
with open(md, "w") as f:
    f.write(f"# CPU: sequences decoding together, {cpu}, {threads} threads, context {context}, commit {commit}\n\n")
    f.write("| model | sessions | mmm tokens/s | llama.cpp tokens/s | mmm / llama.cpp |\n|---|---:|---:|---:|---:|\n")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lt = f"{r['llama_cpp_tokens_per_s']:.0f}" if r["llama_cpp_tokens_per_s"] else "-"
        f.write(f"| {r['model']} | {r['sessions']} | {r['mmm_tokens_per_s']:.0f} | {lt} | {ratio} |\n")
print(open(md).read())
# the plot: tokens/s of all sequences against how many decode together, both programs
import shutil, subprocess
if shutil.which("gnuplot"):
    png, dat = out[:-5] + ".png", out[:-5] + ".dat"
    series = []
    with open(dat, "w") as f:
        for kind in dict.fromkeys(r["model"] for r in rows):
            for prog, key in (("mmm", "mmm_tokens_per_s"), ("llama.cpp", "llama_cpp_tokens_per_s")):
                pts = [(r["sessions"], r[key]) for r in rows if r["model"] == kind and r[key]]
                if not pts:
                    continue
                f.write("".join(f"{n} {v}\n" for n, v in pts) + "\n\n")
                series.append(f"{prog} {kind}")
    plots = ", ".join(f"'{dat}' index {i} u 1:2 w lp lw 2 dt {1 if t.startswith('mmm') else 2} t '{t}'"
                      for i, t in enumerate(series))
    gp = (f"set terminal pngcairo size 900,500\nset output '{png}'\nset logscale x 2\nset grid\nset key top left\n"
          f"set title 'CPU ({threads} threads), {context}-token contexts: sequences decoding together'\n"
          f"set xlabel 'sequences'\nset ylabel 'decode tokens/s, all sequences'\nplot {plots}\n")
    subprocess.run(["gnuplot"], input=gp, text=True, check=False)
    os.remove(dat)
    print(f"plot: {png}")
EOF
