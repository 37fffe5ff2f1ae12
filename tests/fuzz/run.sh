#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_<name>.c with clang (ASan + UBSan) against the
# library sources, then runs each for SECONDS (default 30), FUZZ_JOBS (default 1) at a time; the
# build also runs FUZZ_JOBS compilers at once:
#   [FUZZ_JOBS=N] tests/fuzz/run.sh [SECONDS] [NAME...]
# Each run starts from the committed seeds (tests/fuzz/corpus/<name>) and crash inputs
# (tests/fuzz/regressions/<name>), adds what it discovers to build-fuzz/corpus/<name>, and on a
# crash, leak, timeout or sanitizer report leaves the input in build-fuzz/artifacts/<name>/ and
# its log in build-fuzz/logs/<name>.log. Prints one line per target, then "N passed, N failed";
# exits non-zero when any target failed; a failure's line names its input and the command that
# replays it. Reproduce one input with build-fuzz/fuzz_<name> FILE; once
# fixed, keep it as tests/fuzz/regressions/<name>/crash-<first 8 of its sha1>-<what>, which the
# normal test suite replays (tests/fuzz/test_regressions.c).
set -uo pipefail

cd "$(dirname "$0")/../.."
SECONDS_PER=${1:-30}
shift $(( $# > 0 ? 1 : 0 ))
case $SECONDS_PER in '' | *[!0-9]*) echo "usage: tests/fuzz/run.sh [SECONDS] [NAME...]" >&2; exit 2 ;; esac
JOBS=${FUZZ_JOBS:-1}
case $JOBS in '' | *[!0-9]* | 0) echo "fuzz: FUZZ_JOBS must be a positive number" >&2; exit 2 ;; esac

OUT=build-fuzz
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p "$OUT"/obj "$OUT"/logs "$OUT"/tmp
echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' >"$OUT/probe.c"
"$CC" -fsanitize=fuzzer "$OUT/probe.c" -o "$OUT/probe" 2>/dev/null ||
    { echo "fuzz: $CC cannot link libFuzzer (apt-get install libclang-rt-14-dev)" >&2; exit 2; }

# -O1 keeps execs fast and stack traces readable; UBSan findings abort so libFuzzer keeps them;
# -Wno-pass-failed: at -O1 clang cannot honour the library's "omp simd" hints and says so.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wno-pass-failed
        -fopenmp -Iinclude -I/usr/include/x86_64-linux-gnu/openblas-openmp"
LDLIBS="-lstb -ljpeg -lwebpdemux -lwebp -lonig -lopenblas -lcjson -lz -lm -fopenmp"
# Objects are reused while their sources and headers are older; other flags rebuild them all.
if [ "$("$CC" --version | head -1) $SAN $CFLAGS" != "$(cat "$OUT/flags" 2>/dev/null)" ]; then
    rm -rf "$OUT/obj"
    echo "$("$CC" --version | head -1) $SAN $CFLAGS" >"$OUT/flags"
fi

# Runs "$@" in the background, keeping at most JOBS of them running.
throttle() {
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    "$@" &
}

# Compiles $1 into object $2 with flags $3 unless $2 is newer than $1 and every header it used.
compile() {
    local src=$1 obj=$2 flags=$3 dep
    if [ -f "$obj" ] && [ -f "${obj%.o}.d" ]; then
        local stale=0
        for dep in $(sed -e 's/\\$//' -e 's/^[^:]*://' "${obj%.o}.d"); do
            case $dep in *:) continue ;; esac
            [ "$dep" -nt "$obj" ] && { stale=1; break; }
        done
        [ $stale = 0 ] && return 0
    fi
    mkdir -p "$(dirname "$obj")"
    # shellcheck disable=SC2086
    "$CC" $CFLAGS $flags -MMD -MP -c "$src" -o "$obj"
}

# The library (the CLI aside; without CUDA, src/gpu/none stands in for the GPU runtime as in the
# Makefile), and stb_image compiled here too, so the fuzzer sees coverage and ASan sees memory
# errors inside the decoder (its own UB idioms are not ours to fix: no UBSan).
lib_objs=()
rm -f "$OUT/compile_failed"
compile_or_mark() { compile "$@" || { echo "fuzz: cannot compile $1" >&2; touch "$OUT/compile_failed"; }; }
for src in $(find src -name '*.c' ! -path 'src/cli/*' ! -path 'src/gpu/*' | sort) src/gpu/none/gpu.c; do
    obj=$OUT/obj/${src%.c}.o
    throttle compile_or_mark "$src" "$obj" "$SAN -fsanitize=fuzzer-no-link"
    lib_objs+=("$obj")
done
printf '#define STB_IMAGE_IMPLEMENTATION\n#include <stb/stb_image.h>\n' >"$OUT/stb_image.c"
throttle compile_or_mark "$OUT/stb_image.c" "$OUT/obj/stb_image.o" "-w -fsanitize=address,fuzzer-no-link"
throttle compile_or_mark tests/fuzz/fuzz_util.c "$OUT/obj/tests/fuzz/fuzz_util.o" "$SAN -fsanitize=fuzzer-no-link"
wait
[ -e "$OUT/compile_failed" ] && exit 2
rm -f "$OUT/libmmm.a"
ar rcs "$OUT/libmmm.a" "${lib_objs[@]}"

if [ $# -gt 0 ]; then names=("$@")
else
    names=()
    for f in tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c); n=${n#fuzz_}
        [ "$n" = util ] || names+=("$n")
    done
fi

export OMP_NUM_THREADS=1 TMPDIR=$PWD/$OUT/tmp
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Builds and runs one target; its one-line verdict goes to $OUT/results/<name> ("ok ..." or "FAIL ...").
fuzz_one() {
    local name=$1 src=tests/fuzz/fuzz_$1.c bin=$OUT/fuzz_$1 log=$OUT/logs/$1.log result=$OUT/results/$1
    if [ ! -f "$src" ]; then
        echo "FAIL fuzz $name: no $src" | tee "$result"; return
    fi
    # shellcheck disable=SC2086
    if ! compile "$src" "$OUT/obj/tests/fuzz/fuzz_$name.o" "$SAN -fsanitize=fuzzer-no-link -DMMM_LIBFUZZER" ||
       ! "$CC" $CFLAGS $SAN -fsanitize=fuzzer "$OUT/obj/tests/fuzz/fuzz_$name.o" \
            "$OUT/obj/tests/fuzz/fuzz_util.o" "$OUT/obj/stb_image.o" "$OUT/libmmm.a" $LDLIBS -o "$bin"; then
        echo "FAIL fuzz $name: does not build" | tee "$result"; return
    fi
    mkdir -p "$OUT/corpus/$name" "$OUT/artifacts/$name"
    local dirs=("$OUT/corpus/$name") d
    for d in tests/fuzz/corpus/$name tests/fuzz/regressions/$name; do [ -d "$d" ] && dirs+=("$d"); done
    local dict=(); [ -f "tests/fuzz/dict/$name.dict" ] && dict=("-dict=tests/fuzz/dict/$name.dict")
    "$bin" -max_total_time="$SECONDS_PER" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$name/" "${dict[@]}" "${dirs[@]}" </dev/null >"$log" 2>&1
    local rc=$?
    local execs rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $name ok (${execs:-?} execs in ${SECONDS_PER} s, ${rate:-?}/s)" >"$result"
    else
        local what art
        what=$(grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: BUG|.*runtime error)' "$log" | cut -c1-160)
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "FAIL fuzz $name: ${what:-exit status $rc} (input: ${art:-none}; log: $log${art:+; replay: $bin $art})" >"$result"
    fi
    cat "$result"
}

rm -rf "$OUT/results"
mkdir -p "$OUT/results"
for name in "${names[@]}"; do throttle fuzz_one "$name"; done
wait
passed=0 failed=0
for name in "${names[@]}"; do
    if grep -q '^fuzz .* ok ' "$OUT/results/$name" 2>/dev/null; then passed=$((passed + 1))
    else
        [ -s "$OUT/results/$name" ] || echo "FAIL fuzz $name: no verdict" >"$OUT/results/$name"
        failed=$((failed + 1))
    fi
done
# the failures again, last, where a CI log is read
[ $failed -gt 0 ] && grep -h '^FAIL' "$OUT/results/"*
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
