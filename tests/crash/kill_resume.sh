#!/usr/bin/env bash
# Crash safety: kills `mmm train` and `mmm distill` with SIGKILL at random moments (at least 5
# times each), reruns the same command each time, and checks that every checkpoint left behind
# loads and that the final weights are byte-identical to an uninterrupted run's.
# usage: tests/crash/kill_resume.sh [MMM_BINARY]    (prints "N passed, N failed")
set -u
mmm=${1:-build/mmm}
work=$(mktemp -d /tmp/mmm_crash_XXXXXX)
[ -n "${KEEP:-}" ] && echo "work directory: $work" || trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { echo "$1 ok"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# a small dataset, its tokenizer and a narrow default-shaped model
"$mmm" data fashion-mnist --out "$work/data" --train 400 --test 40 > /dev/null || { echo "FAIL crash: data"; exit 1; }
"$mmm" tokenizer train --corpus "$work/data/corpus.txt" --vocab-size 384 --special "<|im_start|>" --special "<|im_end|>" \
    --special "<img>" --special "</img>" --special "<IMG_CONTEXT>" --out "$work/tok.json" > /dev/null || exit 1
sed -e 's/"hidden_size": 128/"hidden_size": 32/; s/"llm_hidden_size": 128/"llm_hidden_size": 32/' \
    -e 's/"intermediate_size": 384/"intermediate_size": 64/' configs/teacher-fmnist.json > "$work/config.json"

# exec: the background job is mmm itself, so the SIGKILL reaches it (not only a subshell)
train_cmd() { # $1 = output directory
    exec "$mmm" train --config "$work/config.json" --tokenizer "$work/tok.json" --data "$work/data/train.jsonl" \
        --out "$1" --steps 200 --batch-tokens 1024 --save-every 3 --seed 4
}
distill_cmd() {
    exec "$mmm" distill --teacher "$work/ref_train" --data "$work/data/train.jsonl" --out "$1" \
        --steps1 24 --steps2 24 --steps3 24 --batch-tokens 1024 --save-every 3 --seed 4
}

# steps logged so far under an output directory (every stage's JSONL log; eval lines excluded)
progress() { cat $(find "$1" -name '*_log.jsonl' 2> /dev/null) /dev/null 2> /dev/null | grep -vc '"eval"'; }

# Reruns "$2 $3" in the background 6 times, each killed with SIGKILL at a random point: once the
# logs reach the next of 6 random step targets (sorted, within the first 85% of the $4 steps),
# after a further random 0-300 ms, so kills land inside steps, evaluations and checkpoint
# writes. Progress, not wall time, picks the points, so a loaded machine cannot skip them.
# The 7th run finishes. Every checkpoint left after each kill must load.
kill_until_done() { # $1 = label, $2 = command function, $3 = output directory, $4 = total steps
    local kills=0 done=0 bad=0
    local targets; targets=$(awk -v s="$RANDOM" -v n="$4" 'BEGIN { srand(s); for (i = 0; i < 6; i++) print 1 + int(rand() * n * 0.85) }' | sort -n)
    for attempt in $(seq 1 7); do
        "$2" "$3" > "$work/$1.out" 2>&1 &
        local pid=$!
        if [ "$attempt" -le 6 ]; then
            local target; target=$(echo "$targets" | sed -n "${attempt}p")
            while kill -0 "$pid" 2> /dev/null && [ "$(progress "$3")" -lt "$target" ]; do sleep 0.05; done
            sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", rand() * 0.3 }')"
        fi
        if [ "$attempt" -le 6 ] && kill -0 "$pid" 2> /dev/null; then
            kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
            kills=$((kills + 1))
            # whatever checkpoints exist must be complete and loadable
            for ck in $(find "$3" -maxdepth 3 -path '*checkpoints/step-*' -type d ! -name '*.tmp' 2> /dev/null); do
                "$mmm" forward --model "$ck" --ids 0,5,6 --top 0 > "$work/check.out" 2>&1 \
                    || { bad=1; echo "corrupt checkpoint $ck:"; tail -2 "$work/check.out"; ls -la "$ck"; }
            done
        else
            wait "$pid"; local rc=$?
            if [ $rc -ne 0 ]; then echo "$1: run failed:"; grep -v '^\[' "$work/$1.out" | tail -5; bad=1; fi
            done=1; break
        fi
    done
    [ $done -eq 1 ] && [ $kills -ge 5 ] && [ $bad -eq 0 ] && return 0
    echo "$1: done=$done kills=$kills bad=$bad"
    return 1
}

(train_cmd "$work/ref_train") > /dev/null 2>&1 && ok "crash: uninterrupted mmm train" || fail "crash: uninterrupted mmm train"
if kill_until_done train train_cmd "$work/killed_train" 200; then ok "crash: mmm train killed >= 5 times, every checkpoint loads, finished"
else fail "crash: mmm train killed and resumed"; fi
cmp -s "$work/ref_train/model.safetensors" "$work/killed_train/model.safetensors" \
    && ok "crash: mmm train final weights equal the uninterrupted run's" || fail "crash: mmm train final weights differ"

(distill_cmd "$work/ref_distill") > /dev/null 2>&1 && ok "crash: uninterrupted mmm distill" || fail "crash: uninterrupted mmm distill"
if kill_until_done distill distill_cmd "$work/killed_distill" 72; then ok "crash: mmm distill killed >= 5 times, every checkpoint loads, finished"
else fail "crash: mmm distill killed and resumed"; fi
cmp -s "$work/ref_distill/model.safetensors" "$work/killed_distill/model.safetensors" \
    && ok "crash: mmm distill final weights equal the uninterrupted run's" || fail "crash: mmm distill final weights differ"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
