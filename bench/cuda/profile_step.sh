#!/usr/bin/env bash
# Where a training step's GPU time goes: Nsight Compute times every kernel of
# `mmm bench --train-step` (HoVLE-2.6B size, bf16 GEMMs, one timed step after the two warm-up
# ones) at the normal clocks and warm caches, and kernel_summary.py groups them by kernel.
#   bench/cuda/profile_step.sh BIN_DIR [KINDS] [TOKENS]     (KINDS: teacher, hybrid or linear)
# Output: $OUT/profile_KINDS_TOKENS.csv and the summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:?usage: bench/cuda/profile_step.sh BIN_DIR [KINDS] [TOKENS]}
kinds=${2:-linear}
tokens=${3:-1024}
out=${OUT:-build-gpu/out}
mkdir -p "$out"
[ -d "$bin/lib" ] && export LD_LIBRARY_PATH="$PWD/$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
csv="$out/profile_${kinds}_${tokens}.csv"
ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --page raw \
    "$bin/mmm" bench --train-step --device cuda --dtype bf16 --tokens "$tokens" --steps 1 --kinds "$kinds" \
    --dims hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544 >"$csv"
grep -v '^"' "$csv" | grep -v '^==PROF==' || true # the benchmark's own lines
# three steps ran (two warm-up, one timed): report per step
python3 bench/cuda/kernel_summary.py "$csv" --divide 3 --top 30
