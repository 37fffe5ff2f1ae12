#!/usr/bin/env bash
# The paper's ablations on the embedded default, at equal training budgets:
#   initialisation   scratch vs inherit vs mimic (linear student, stages 1+2+3)
#   stages           2+3 vs 1+2+3 (linear, mimic)
#   hybrid placement head-interleaved vs tail-interleaved vs head-stacked vs tail-stacked vs auto
#                    (K attention layers, stage 3 from the shared stages 1-2)
# usage: bench/ablations.sh TEACHER_DIR DATA_DIR OUT_DIR [STEPS_PER_STAGE [K]]
# (LR_SCALE, default 10 as in mmm demo, multiplies the paper's learning rates; JOBS, default 1,
# runs that many distillations at once, each on THREADS threads, default 2; PART=hybrid runs
# only the placements)
# Prints one line per variant (exact match on SAMPLES=600 test samples, per task) and writes
# OUT_DIR/ablations.md.
set -euo pipefail
teacher=$1 data=$2 out=$3 steps=${4:-150} k=${5:-2}
mmm=${MMM:-./build/mmm}
mkdir -p "$out"
common="--teacher $teacher --data $data/train.jsonl --steps1 $steps --steps2 $steps --steps3 $steps --accum 2 --batch-tokens 1024 --lr-scale ${LR_SCALE:-10}"
eval_one() { # $1 = label, $2 = model dir
    "$mmm" eval --model "$2" --data "$data/test.jsonl" --teacher "$teacher" --samples "${SAMPLES:-600}" --json "$out/$1.json" > "$out/$1.eval.txt"
    printf "| %s | %s |\n" "$1" "$(grep -E '^(name|yesno|group|grid|which|count|all) ' "$out/$1.eval.txt" \
        | awk '{printf "%s %s; ", $1, $3}')$(grep agreement "$out/$1.eval.txt" | sed 's/agreement with the teacher/agree/')" | tee -a "$out/ablations.md"
}
jobs=${JOBS:-1}
[ "$jobs" -gt 1 ] && export OMP_NUM_THREADS=${THREADS:-2} OPENBLAS_NUM_THREADS=1
# runs "$mmm distill ARGS" into $out/$1 in the background, at most $jobs at once
distill_bg() { # $1 = label, rest = distill arguments
    local label=$1; shift
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    "$mmm" distill $common "$@" --out "$out/$label" > "$out/$label.log" 2>&1 &
}
echo "| variant | test accuracy per task |" > "$out/ablations.md"
echo "|---|---|" >> "$out/ablations.md"
if [ "${PART:-all}" = hybrid ]; then # placements only: the shared stages 1-2 alone
    distill_bg init_mimic --stages 1,2
    wait
else
    for init in scratch inherit mimic; do distill_bg "init_$init" --init "$init"; done
    distill_bg stages_23 --stages 2,3
    wait
    for v in init_scratch init_inherit init_mimic stages_23; do eval_one "$v" "$out/$v"; done
fi
L=$(grep -o '"num_hidden_layers":[[:space:]]*[0-9]*' "$teacher/config.json" | grep -o '[0-9]*$' | awk '{s += $1} END {print s}')
for place in head-interleaved tail-interleaved head-stacked tail-stacked auto; do
    dir="$out/hybrid_$place"
    mkdir -p "$dir"
    for s in 1 2; do [ -e "$dir/stage$s" ] || ln -s "../init_mimic/stage$s" "$dir/stage$s"; done
    if [ "$place" = auto ]; then distill_bg "hybrid_$place" --attention-layers "auto:$k"
    else distill_bg "hybrid_$place" --hybrid "$place:$k"; fi
done
wait
for place in head-interleaved tail-interleaved head-stacked tail-stacked auto; do eval_one "hybrid_${place}_$k" "$out/hybrid_$place"; done
echo "wrote $out/ablations.md ($L layers, K = $k, $steps steps per stage)"
