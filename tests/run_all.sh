#!/usr/bin/env bash
# The test suite: the unit tests, the same tests under AddressSanitizer + UBSan, the
# kill-and-resume script, the small-hostile-inputs script (tests/robust/small_inputs.sh), a
# HoVLE-shaped directory end to end and mmm serve driven by real clients (tests/serve).
# Ends with the total "N passed, N failed".
# usage: tests/run_all.sh [FILTER...]   (with a filter: only the matching unit tests)
set -u
cd "$(dirname "$0")/.."
total_passed=0 total_failed=0 status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

stage() { # $1 = label, rest = command
    local label=$1; shift
    echo "### $label"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        total_passed=$((total_passed + $(echo "$line" | cut -d' ' -f1)))
        total_failed=$((total_failed + $(echo "$line" | cut -d' ' -f3)))
    fi
    if [ "$rc" -ne 0 ]; then
        status=1
        [ -z "$line" ] && total_failed=$((total_failed + 1)) && echo "FAIL $label exited with $rc"
    fi
}

if [ $# -gt 0 ]; then
    stage "unit tests ($*)" env MMM_BIN=build/mmm ./build/mmm_tests "$@"
else
    stage "unit tests" env MMM_BIN=build/mmm ./build/mmm_tests
    stage "unit tests under ASan + UBSan" env MMM_BIN=build-asan/mmm ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ./build-asan/mmm_tests
    stage "kill and resume" bash tests/crash/kill_resume.sh build/mmm
    stage "small hostile inputs" bash tests/robust/small_inputs.sh build/mmm
    stage "a HoVLE-shaped model directory end to end" bash tests/robust/hovle_shaped.sh build/mmm
    stage "mmm serve with curl and the openai npm package" bash tests/serve/serve_clients.sh build/mmm
fi
echo "$total_passed passed, $total_failed failed"
exit $status
