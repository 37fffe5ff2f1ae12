#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_<name>.c with clang (ASan + UBSan) against the
# library sources, then runs each, one after another, for SECONDS (default 30):
#   tests/fuzz/run.sh [SECONDS] [NAME...]
# Each run starts from the committed seeds (tests/fuzz/corpus/<name>) and crash inputs
# (tests/fuzz/regressions/<name>), adds what it discovers to build-fuzz/corpus/<name>, and on a
# crash, leak, timeout or sanitizer report leaves the input in build-fuzz/artifacts/<name>/ and
# its log in build-fuzz/logs/<name>.log. Prints one line per target, then "N passed, N failed";
# exits non-zero when any target failed. Reproduce one input with build-fuzz/fuzz_<name> FILE; once
# fixed, keep it as tests/fuzz/regressions/<name>/crash-<first 8 of its sha1>-<what>, which the
# normal test suite replays (tests/fuzz/test_regressions.c).
set -uo pipefail

cd "$(dirname "$0")/../.."
SECONDS_PER=${1:-30}
shift $(( $# > 0 ? 1 : 0 ))
case $SECONDS_PER in '' | *[!0-9]*) echo "usage: tests/fuzz/run.sh [SECONDS] [NAME...]" >&2; exit 2 ;; esac

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
LDLIBS="-lstb -ljpeg -lwebp -lonig -lopenblas -lcjson -lz -lm -fopenmp"
# Objects are reused while their sources and headers are older; other flags rebuild them all.
if [ "$("$CC" --version | head -1) $SAN $CFLAGS" != "$(cat "$OUT/flags" 2>/dev/null)" ]; then
    rm -rf "$OUT/obj"
    echo "$("$CC" --version | head -1) $SAN $CFLAGS" >"$OUT/flags"
fi

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
for src in $(find src -name '*.c' ! -path 'src/cli/*' ! -path 'src/gpu/*' | sort) src/gpu/none/gpu.c; do
    obj=$OUT/obj/${src%.c}.o
    compile "$src" "$obj" "$SAN -fsanitize=fuzzer-no-link" || { echo "fuzz: cannot compile $src" >&2; exit 2; }
    lib_objs+=("$obj")
done
printf '#define STB_IMAGE_IMPLEMENTATION\n#include <stb/stb_image.h>\n' >"$OUT/stb_image.c"
compile "$OUT/stb_image.c" "$OUT/obj/stb_image.o" "-w -fsanitize=address,fuzzer-no-link" ||
    { echo "fuzz: cannot compile stb_image" >&2; exit 2; }
rm -f "$OUT/libmmm.a"
ar rcs "$OUT/libmmm.a" "${lib_objs[@]}"
compile tests/fuzz/fuzz_util.c "$OUT/obj/tests/fuzz/fuzz_util.o" "$SAN -fsanitize=fuzzer-no-link" ||
    { echo "fuzz: cannot compile tests/fuzz/fuzz_util.c" >&2; exit 2; }

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
passed=0 failed=0
for name in "${names[@]}"; do
    src=tests/fuzz/fuzz_$name.c bin=$OUT/fuzz_$name log=$OUT/logs/$name.log
    if [ ! -f "$src" ]; then
        echo "FAIL fuzz $name: no $src"; failed=$((failed + 1)); continue
    fi
    # shellcheck disable=SC2086
    if ! compile "$src" "$OUT/obj/tests/fuzz/fuzz_$name.o" "$SAN -fsanitize=fuzzer-no-link -DMMM_LIBFUZZER" ||
       ! "$CC" $CFLAGS $SAN -fsanitize=fuzzer "$OUT/obj/tests/fuzz/fuzz_$name.o" \
            "$OUT/obj/tests/fuzz/fuzz_util.o" "$OUT/obj/stb_image.o" "$OUT/libmmm.a" $LDLIBS -o "$bin"; then
        echo "FAIL fuzz $name: does not build"; failed=$((failed + 1)); continue
    fi
    mkdir -p "$OUT/corpus/$name" "$OUT/artifacts/$name"
    dirs=("$OUT/corpus/$name")
    for d in tests/fuzz/corpus/$name tests/fuzz/regressions/$name; do [ -d "$d" ] && dirs+=("$d"); done
    dict=(); [ -f "tests/fuzz/dict/$name.dict" ] && dict=("-dict=tests/fuzz/dict/$name.dict")
    "$bin" -max_total_time="$SECONDS_PER" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$name/" "${dict[@]}" "${dirs[@]}" </dev/null >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $name ok (${execs:-?} execs in ${SECONDS_PER} s, ${rate:-?}/s)"
        passed=$((passed + 1))
    else
        what=$(grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: BUG|.*runtime error)' "$log" | cut -c1-160)
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "FAIL fuzz $name: ${what:-exit status $rc} (input: ${art:-none}; log: $log)"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
