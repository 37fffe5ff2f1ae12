#!/usr/bin/env bash
# Trains several recipes of the default teacher side by side (two threads each, so a 16-core
# machine runs seven at once) and prints each one's test accuracy per task: a way to choose the
# recipe of the shipped teacher (scripts/train-default-teacher.sh) on a bigger machine. Each
# recipe line is "label|mmm data --mix[/vocab size]|mmm train options[|config.json]" (the
# tokenizer's vocabulary defaults to 384, the shipped config's; defaults below: learning
# rate, task mix and batch shape around the shipped recipe; the config defaults to
# configs/teacher-fmnist.json). --half-steps / --double-steps in the options scale STEPS.
#   bench/teacher_sweep.sh OUT_DIR [STEPS] [SOURCE_DIR]
#   (MMM=path/to/mmm, RECIPES=file of recipe lines, TRAIN_SAMPLES=100000)
set -euo pipefail
out=$1 steps=${2:-4000} source=${3:-/usr/share/datasets/fashion-mnist}
mmm=${MMM:-./build/mmm}
mkdir -p "$out"
if [ -n "${RECIPES:-}" ]; then recipes=$(cat "$RECIPES"); else recipes=$(cat <<'LIST' 
lr2e-3|name=50|--lr 2e-3 --decay 0.5 --accum 2 --batch-tokens 1024
lr3e-3|name=50|--lr 3e-3 --decay 0.5 --accum 2 --batch-tokens 1024
lr4e-3|name=50|--lr 4e-3 --decay 0.5 --accum 2 --batch-tokens 1024
lr2e-3-name65|name=65|--lr 2e-3 --decay 0.5 --accum 2 --batch-tokens 1024
lr3e-3-name65|name=65|--lr 3e-3 --decay 0.5 --accum 2 --batch-tokens 1024
lr3e-3-decay0.7|name=50|--lr 3e-3 --decay 0.7 --accum 2 --batch-tokens 1024
lr4e-3-batch4096-half|name=50|--lr 4e-3 --decay 0.5 --accum 4 --batch-tokens 1024 --half-steps
LIST
); fi
tok_args='--special <|im_start|> --special <|im_end|> --special <img> --special </img> --special <IMG_CONTEXT>'
# one dataset and tokenizer per task mix
for mix in $(echo "$recipes" | cut -d'|' -f2 | sort -u); do
    d="$out/data-${mix/\//-v}"
    [ -e "$d/tokenizer.json" ] && continue
    vocab=384
    case "$mix" in */*) vocab=${mix#*/} ;; esac
    "$mmm" data fashion-mnist --out "$d" --train "${TRAIN_SAMPLES:-100000}" --test 2000 --mix "${mix%/*}" --source "$source" > "$d.log" 2>&1
    "$mmm" tokenizer train --corpus "$d/corpus.txt" --vocab-size "$vocab" $tok_args --out "$d/tokenizer.json" >> "$d.log" 2>&1
done
while IFS='|' read -r label mix opts config; do
    s=$steps
    case "$opts" in *--half-steps*) s=$((steps / 2)); opts=${opts/--half-steps/} ;; esac
    case "$opts" in *--double-steps*) s=$((steps * 2)); opts=${opts/--double-steps/} ;; esac
    d="$out/data-${mix/\//-v}"
    OMP_NUM_THREADS=2 "$mmm" train --config "${config:-configs/teacher-fmnist.json}" --tokenizer "$d/tokenizer.json" \
        --data "$d/train.jsonl" --eval "$d/test.jsonl" --out "$out/$label" --steps "$s" $opts \
        --eval-every $((s / 4)) --eval-samples 500 --save-every 1000 < /dev/null > "$out/$label.log" 2>&1 &
done <<< "$recipes"
wait
printf "| recipe | steps | seconds | name | yesno | group | which | count | grid | all |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
while IFS='|' read -r label mix opts config; do
    [ -e "$out/$label/model.safetensors" ] || { echo "| $label | (did not finish) |"; continue; }
    "$mmm" eval --model "$out/$label" --data "$out/data-${mix/\//-v}/test.jsonl" < /dev/null > "$out/$label.eval" 2>&1
    acc() { awk -v t="$1" '$1 == t { print $3 }' "$out/$label.eval"; }
    ran=$(grep -o 'mmm train: [0-9]* steps in [0-9]* s' "$out/$label.log" | awk '{ print $3 " | " $6 }')
    echo "| $label | $ran | $(acc name) | $(acc yesno) | $(acc group) | $(acc which) | $(acc count) | $(acc grid) | $(acc all) |"
done <<< "$recipes"
