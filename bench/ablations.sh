#!/usr/bin/env bash
# The paper's ablations on the embedded default, over seeds and at two budgets, so that an
# ordering can be told from noise (docs/design.md §4):
#   init       scratch / inherit / mimic                        linear student, stages 1+2+3
#   stages     3 only / 2+3 / 1+2+3                             linear, mimic
#   placement  head-interleaved / tail-stacked / auto (by the stage-2 loss), K attention layers
#   count      0, 1, ..., L/2 attention layers (head-interleaved; 0 is the linear student)
# Hybrids take stage 3 from the mimic run's stages 1-2 of the same seed and budget.
#
# usage: bench/ablations.sh TEACHER_DIR DATA_DIR OUT_DIR        runs what is missing, then reports
#        bench/ablations.sh report OUT_DIR                       the report alone
# environment: STEPS="120 360" per-stage steps (one budget each), SEEDS="1 2 3", K (default L/3),
#   PART=all|init|stages|placement|count, JOBS runs at once (default 1) of THREADS threads each
#   (default 2), DEVICE=cpu|cuda, LR_SCALE (default 10, as mmm demo), CE_WEIGHT (default 0, the
#   paper's), SAMPLES (test samples scored, default the whole split), MMM (default ./build/mmm).
#   A finished run (its eval JSON) is not run again.
# Writes OUT_DIR/ablations.{json,md} (mean, standard deviation and every seed's all-task exact
# match, per task means, KL to the teacher) and OUT_DIR/ablations.png when gnuplot is there.
set -euo pipefail
cd "$(dirname "$0")/.."
report() { python3 bench/ablations_report.py "$1"; }
if [ "${1:-}" = report ]; then report "${2:?usage: bench/ablations.sh report OUT_DIR}"; exit; fi
teacher=${1:?usage: bench/ablations.sh TEACHER_DIR DATA_DIR OUT_DIR} data=${2:?DATA_DIR} out=${3:?OUT_DIR}
mmm=${MMM:-./build/mmm}
steps_list=${STEPS:-120 360} seeds=${SEEDS:-1 2 3} part=${PART:-all} jobs=${JOBS:-1}
L=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["embedding_config"]["num_hidden_layers"] + c["llm_config"]["num_hidden_layers"])' "$teacher/config.json")
k=${K:-$(( L / 3 > 0 ? L / 3 : 1 ))}
mkdir -p "$out"
export OMP_NUM_THREADS=${THREADS:-2} OPENBLAS_NUM_THREADS=1
wants() { [ "$part" = all ] || [ "$part" = "$1" ]; }

# run GROUP VARIANT STEPS SEED [distill arguments]: distills into OUT/runs/STEPS/SEED/VARIANT and
# scores it on the whole test split; skipped when its score is there
run() {
    local group=$1 variant=$2 steps=$3 seed=$4; shift 4
    local dir=$out/runs/$steps/$seed/$variant
    [ -s "$dir.eval.json" ] && return 0
    mkdir -p "$dir"
    "$mmm" distill --teacher "$teacher" --data "$data/train.jsonl" --out "$dir" --steps1 "$steps" --steps2 "$steps" \
        --steps3 "$steps" --accum 2 --batch-tokens 1024 --lr-scale "${LR_SCALE:-10}" --ce-weight "${CE_WEIGHT:-0}" \
        --seed "$seed" --device "${DEVICE:-cpu}" "$@" > "$dir.log" 2>&1 || { echo "FAIL $group/$variant (seed $seed, $steps steps): $(tail -n 1 "$dir.log")"; return 1; }
    "$mmm" eval --model "$dir" --data "$data/test.jsonl" --teacher "$teacher" --device "${DEVICE:-cpu}" \
        ${SAMPLES:+--samples "$SAMPLES"} --json "$dir.eval.tmp" > /dev/null 2>> "$dir.log" || { echo "FAIL eval $group/$variant: $(tail -n 1 "$dir.log")"; return 1; }
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(group=sys.argv[2], variant=sys.argv[3], steps=int(sys.argv[4]), seed=int(sys.argv[5])); json.dump(d, open(sys.argv[1], "w"))' \
        "$dir.eval.tmp" "$group" "$variant" "$steps" "$seed" && mv "$dir.eval.tmp" "$dir.eval.json"
    echo "$group/$variant seed $seed, $steps steps: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$dir.eval.json")"
}
# bg ARGS...: run in the background, at most $jobs at once
bg() {
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run "$@" &
}
# hybrid GROUP VARIANT STEPS SEED CHOICE...: stage 3 from the mimic run's stages 1-2
hybrid() {
    local group=$1 variant=$2 steps=$3 seed=$4; shift 4
    local dir=$out/runs/$steps/$seed/$variant
    mkdir -p "$dir"
    for s in 1 2; do [ -e "$dir/stage$s" ] || ln -s "../init_mimic/stage$s" "$dir/stage$s"; done
    bg "$group" "$variant" "$steps" "$seed" "$@"
}

t0=$(date +%s)
for steps in $steps_list; do
    for seed in $seeds; do
        # first wave: the runs that start from the seed (the mimic one also feeds the hybrids)
        if wants init || wants placement || wants count || wants stages; then bg init init_mimic "$steps" "$seed" --init mimic; fi
        if wants init; then for init in scratch inherit; do bg init "init_$init" "$steps" "$seed" --init "$init"; done; fi
        if wants stages; then
            bg stages stages_3 "$steps" "$seed" --stages 3
            bg stages stages_23 "$steps" "$seed" --stages 2,3
        fi
    done
    wait
    for seed in $seeds; do
        if wants placement; then
            hybrid placement "place_head-interleaved_$k" "$steps" "$seed" --hybrid "head-interleaved:$k"
            hybrid placement "place_tail-stacked_$k" "$steps" "$seed" --hybrid "tail-stacked:$k"
            hybrid placement "place_auto_$k" "$steps" "$seed" --attention-layers "auto:$k"
        fi
        if wants count; then
            for n in $(seq 1 $(( L / 2 ))); do
                [ "$n" = "$k" ] && wants placement && continue # the same run as place_head-interleaved_K
                hybrid count "count_$n" "$steps" "$seed" --hybrid "head-interleaved:$n"
            done
        fi
    done
    wait
    echo "== $steps steps per stage done ($(( $(date +%s) - t0 )) s)"
done
report "$out"
