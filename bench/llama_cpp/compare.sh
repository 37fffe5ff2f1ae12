#!/bin/bash
# mmm against llama.cpp on the CPU, on the same random weights (`mmm bench`'s default dims):
# builds llama.cpp from a source tree on this machine (skips, saying so, when there is none),
# writes the teacher, hybrid and linear student as GGUF (f32 and q8_0), checks that llama.cpp's
# teacher computes mmm's logits, then times decode at each context and prefill at one, both
# programs A/B interleaved, and writes the medians to bench/results/ (JSON + Markdown).
# The mapping and its differences of semantics: bench/llama_cpp/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
parent=$(dirname "$root")

contexts=1K,8K,32K prefill=8K reps=3 steps=16 threads=2 kinds=teacher,hybrid,linear check=1 busy=0 dims= keep_coretype=0
out=$root/bench/results/llama_cpp_$(date -u +%Y-%m-%d).json

usage() {
    cat <<EOF
usage: bench/llama_cpp/compare.sh [--contexts LIST] [--prefill N] [--reps N] [--steps N]
                                  [--threads N] [--kinds LIST] [--dims SPEC] [--busy N]
                                  [--out FILE.json] [--no-check] [--keep-coretype]

  --contexts LIST  decode contexts (default $contexts)
  --prefill N      the context whose prefill is timed too, 0 for none (default $prefill)
  --reps N         interleaved runs per point; the median is reported (default $reps)
  --steps N        decoded tokens per run (default $steps)
  --threads N      threads for both programs (default $threads; mmm through OMP_NUM_THREADS)
  --kinds LIST     teacher,hybrid,linear (default all)
  --dims SPEC      other dimensions, as mmm bench --dims takes them (default its defaults;
                   HoVLE-2.6B: hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544)
  --busy N         N busy processes (one core's worth each) run throughout the timing: decode on
                   a machine that other work shares
  --out FILE.json  results (default bench/results/llama_cpp_DATE.json; FILE.md beside it)
  --no-check       skip the logits check
  --keep-coretype  keep an OPENBLAS_CORETYPE of the environment for mmm. By default it is
                   removed, so that each program runs the kernels it picks for this processor
                   (llama.cpp is built -march=native; OpenBLAS chooses when it loads, and a
                   Haswell forced on an AVX-512 machine takes 0.6x from mmm's prefill GEMMs)

Environment:
  MMM_BIN          mmm to measure (default build/mmm)
  MMM_COMMIT       the commit that binary was built from (default: this tree's HEAD, +dirty)
  LLAMA_CPP_SRC    a llama.cpp source tree or bare git directory (default: the first of
                   $parent/llama.cpp-src, /work/.mirror/ggml-org+llama.cpp/repo,
                   /work/.mirror/ggerganov+llama.cpp/repo)
  LLAMA_CPP_BUILD  its CMake build directory, kept between runs (default $parent/llama.cpp-build);
                   models, GGUFs and logs go to LLAMA_CPP_BUILD/mmm-compare
  PYTHON           a Python 3 with numpy (default python3, else /usr/bin/python3)
  JOBS             build jobs (default 2)
EOF
}

k() { # 8K -> 8192
    case $1 in *[Kk]) echo $((${1%?} * 1024)) ;; *) echo "$1" ;; esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --contexts) contexts=$2; shift 2 ;;
    --prefill) prefill=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --dims) dims=$2; shift 2 ;;
    --busy) busy=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-check) check=0; shift ;;
    --keep-coretype) keep_coretype=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
prefill=$(k "$prefill")

mmm=${MMM_BIN:-$root/build/mmm}
[ -x "$mmm" ] || { echo "compare.sh: no mmm at $mmm (make, or set MMM_BIN)" >&2; exit 1; }
[ $keep_coretype = 1 ] || unset OPENBLAS_CORETYPE
echo "compare.sh: $("$mmm" version)"
py=${PYTHON:-python3}
"$py" -c 'import numpy' 2>/dev/null || py=/usr/bin/python3
"$py" -c 'import numpy' 2>/dev/null || { echo "compare.sh: no Python with numpy (set PYTHON)" >&2; exit 1; }

# --- llama.cpp's source: a tree, or a bare git directory to export one from
src=
for c in ${LLAMA_CPP_SRC:-} "$parent/llama.cpp-src" /work/.mirror/ggml-org+llama.cpp/repo /work/.mirror/ggerganov+llama.cpp/repo; do
    if [ -f "$c/CMakeLists.txt" ] && [ -f "$c/include/llama.h" ]; then src=$c; break; fi
    if [ -f "$c/HEAD" ] && [ -d "$c/objects" ]; then
        src=$parent/llama.cpp-src
        echo "compare.sh: exporting $(git --git-dir="$c" rev-parse --short HEAD) from $c to $src"
        # a mirror may lack its largest blobs (vocabulary GGUFs under models/): leave those out
        missing=$(git --git-dir="$c" ls-tree -r HEAD | awk '{print $3}' | git --git-dir="$c" cat-file --batch-check |
            awk '$2 == "missing" {print $1}')
        exclude=()
        if [ -n "$missing" ]; then
            while IFS=$'\t' read -r _ path; do exclude+=(":(exclude)$path"); done < <(git --git-dir="$c" ls-tree -r HEAD | grep -F "$missing")
        fi
        mkdir -p "$src"
        # (git 2.39 still names each excluded missing blob on stderr, and exits 0)
        git --git-dir="$c" archive HEAD -- . "${exclude[@]}" 2>/dev/null | tar -x -C "$src"
        git --git-dir="$c" rev-parse HEAD >"$src/.commit"
        break
    fi
done
if [ -z "$src" ]; then
    echo "compare.sh: SKIP: no llama.cpp source on this machine (set LLAMA_CPP_SRC to a source tree" \
        "or bare git directory of the public llama.cpp repository; README.md says how to get one)"
    exit 0
fi
llama_commit=$(cat "$src/.commit" 2>/dev/null || git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
llama_commit=${llama_commit:0:10}
have_nemotron=0
grep -q '"nemotron_h"' "$src/src/llama-arch.cpp" && have_nemotron=1
if [ $have_nemotron = 0 ] && [[ $kinds != teacher ]]; then
    echo "compare.sh: llama.cpp $llama_commit has no nemotron_h architecture: the students are skipped"
    kinds=teacher
fi

grep -q -- '--n-depth' "$src"/*/llama-bench/llama-bench.cpp 2>/dev/null ||
    { echo "compare.sh: llama.cpp $llama_commit is too old (its llama-bench has no --n-depth)" >&2; exit 1; }

# --- build (once; the build directory is kept)
build=${LLAMA_CPP_BUILD:-$parent/llama.cpp-build}
if [ ! -x "$build/bin/llama-bench" ] || [ ! -x "$build/bin/llama-quantize" ]; then
    echo "compare.sh: building llama.cpp $llama_commit (CPU only, native) in $build"
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
    cmake --build "$build" -j"${JOBS:-2}" --target llama-bench llama-quantize
fi
work=$build/mmm-compare
mkdir -p "$work/gguf" "$work/logs"
log=$work/logs/$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$log"

# --- the same weights: mmm writes them, our mapping turns them into GGUF
echo "compare.sh: models from '$mmm bench --save' -> $work/models"
dims_args=()
[ -n "$dims" ] && dims_args=(--dims "$dims")
rm -rf "$work/models"
"$mmm" bench --save "$work/models" --kinds "$kinds" "${dims_args[@]}" >"$log/save.txt"
IFS=, read -r -a kind_list <<<"$kinds"
for kind in "${kind_list[@]}"; do
    "$py" "$here/mmm_to_gguf.py" "$work/models/$kind" "$work/gguf/$kind-f32.gguf" --gguf-py "$src/gguf-py"
    "$build/bin/llama-quantize" "$work/gguf/$kind-f32.gguf" "$work/gguf/$kind-q8_0.gguf" q8_0 >"$log/quantize-$kind.txt" 2>&1 ||
        { echo "compare.sh: llama-quantize failed: $log/quantize-$kind.txt" >&2; exit 1; }
done

# --- do the GGUFs compute mmm's models? The teacher directly; a student through a float64
# reference of each semantics (README.md says where they differ), and the gap is printed
if [ $check = 1 ]; then
    cc -O2 -std=c11 "$here/logits.c" -I"$src/include" -I"$src/ggml/include" -L"$build/bin" -lllama -lggml -lggml-base \
        -Wl,-rpath,"$build/bin" -o "$work/logits"
    ids=1,517,33,900,2,64,781,300,12,1023,5,406,77,640,219,8
    fail() { echo "compare.sh: llama.cpp's $1 does not compute what the mapping says (see $log/check.txt)" >&2; exit 1; }
    for kind in "${kind_list[@]}"; do
        "$mmm" forward --model "$work/models/$kind" --ids "$ids" --dump "$log/mmm-$kind.safetensors" --top 0 >/dev/null
        [ "$kind" = teacher ] ||
            "$py" "$here/student_reference.py" "$work/models/$kind" "$ids" --as mmm \
                --mmm-dump "$log/mmm-$kind.safetensors" >>"$log/check.txt" || fail "$kind (mmm side)"
        for mode in batch step; do
            "$work/logits" "$work/gguf/$kind-f32.gguf" "$ids" "$log/llama-$kind-$mode.f32" $mode
            if [ "$kind" = teacher ]; then
                "$py" "$here/check_logits.py" "$log/mmm-$kind.safetensors" "$log/llama-$kind-$mode.f32" \
                    --label "$kind f32, llama.cpp $mode" >>"$log/check.txt" || fail $kind
            else
                "$py" "$here/student_reference.py" "$work/models/$kind" "$ids" --as nemotron_h \
                    --llama "$log/llama-$kind-$mode.f32" >>"$log/check.txt" || fail "$kind ($mode)"
                "$py" "$here/check_logits.py" "$log/mmm-$kind.safetensors" "$log/llama-$kind-$mode.f32" --tol inf \
                    --label "$kind f32, llama.cpp $mode (semantics differ)" >>"$log/check.txt"
            fi
        done
    done
    cat "$log/check.txt"
    # what 8-bit weights cost each program, on the path it decodes with: mmm int8 against mmm
    # fp32 (token by token after the first), llama.cpp q8_0 against its f32 (token by token)
    for kind in "${kind_list[@]}"; do
        for dt in f32 int8; do
            "$mmm" forward --model "$work/models/$kind" --ids "$ids" --decode --dtype $dt \
                --dump "$log/mmm-$kind-decode-$dt.safetensors" --top 0 >/dev/null
        done
        "$work/logits" "$work/gguf/$kind-q8_0.gguf" "$ids" "$log/llama-$kind-step.q8_0" step
        (cd "$here" && "$py" kl.py "$log/mmm-$kind-decode-f32.safetensors" "$log/mmm-$kind-decode-int8.safetensors" \
            --first 1 --label "mmm $kind int8" --json && "$py" kl.py "$log/llama-$kind-step.f32" "$log/llama-$kind-step.q8_0" \
            --positions "$(echo "$ids" | tr , '\n' | wc -l)" --first 1 --label "llama.cpp $kind q8_0" --json) >>"$log/kl.jsonl"
    done
    cat "$log/kl.jsonl"
fi

# --- timing: for each repetition, context and model, mmm and llama.cpp (f32, q8_0) back to back,
# the order flipped every repetition
samples=$log/samples.txt
: >"$samples"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run_mmm() { # kind ctx rep dtype: the decode weights' type (prefill, always fp32, timed with f32)
    local j=$log/mmm-$1-$4-$2-$3.json pmax=0 prog=mmm
    [ "$2" = "$prefill" ] && [ "$4" = f32 ] && pmax=$2
    [ "$4" = f32 ] || prog=mmm_$4
    OMP_NUM_THREADS=$threads "$mmm" bench --kinds "$1" --contexts "$2" --steps "$steps" --prefill-max $pmax \
        --dtype "$4" "${dims_args[@]}" --json "$j" >>"$log/mmm.txt"
    "$py" - "$j" "$1" "$2" "$prog" >>"$samples" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(sys.argv[4], sys.argv[2], sys.argv[3], "decode_ms", r["ms_per_token"])
if "prefill_ms" in r:
    print(sys.argv[4], sys.argv[2], sys.argv[3], "prefill_tps", int(sys.argv[3]) / (r["prefill_ms"] * 1e-3))
EOF
}
run_llama() { # kind ctx rep quant
    local j=$log/llama-$1-$4-$2-$3.jsonl
    # -lm none: the weights read into memory before timing, as mmm holds them; mapped, a model the
    # page cache cannot keep beside the others (10 GB at HoVLE size) would be timed from disk
    "$build/bin/llama-bench" -m "$work/gguf/$1-$4.gguf" -lm none -t "$threads" -r 1 -o jsonl -p 0 -n "$steps" -d "$2" >"$j"
    [ "$2" = "$prefill" ] && "$build/bin/llama-bench" -m "$work/gguf/$1-$4.gguf" -lm none -t "$threads" -r 1 -o jsonl \
        -p "$2" -n 0 >>"$j"
    "$py" - "$j" "$1" "$2" "llama_$4" >>"$samples" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["n_gen"]:
        print(sys.argv[4], sys.argv[2], sys.argv[3], "decode_ms", 1e3 / r["avg_ts"])
    else:
        print(sys.argv[4], sys.argv[2], sys.argv[3], "prefill_tps", r["avg_ts"])
EOF
}
IFS=, read -r -a ctx_list <<<"$contexts"
busy_pids=()
stop_busy() { [ ${#busy_pids[@]} = 0 ] || kill "${busy_pids[@]}" 2>/dev/null || true; }
trap stop_busy EXIT
for _ in $(seq 1 "$busy"); do
    sh -c 'while :; do :; done' &
    busy_pids+=($!)
done
for rep in $(seq 1 "$reps"); do
    for c in "${ctx_list[@]}"; do
        c=$(k "$c")
        for kind in "${kind_list[@]}"; do
            echo "compare.sh: run $rep/$reps, $kind at $c tokens (load $(cut -d' ' -f1 /proc/loadavg))"
            if [ $((rep % 2)) = 1 ]; then
                run_mmm "$kind" "$c" "$rep" f32; run_mmm "$kind" "$c" "$rep" int8
                run_llama "$kind" "$c" "$rep" f32; run_llama "$kind" "$c" "$rep" q8_0
            else
                run_llama "$kind" "$c" "$rep" q8_0; run_llama "$kind" "$c" "$rep" f32
                run_mmm "$kind" "$c" "$rep" int8; run_mmm "$kind" "$c" "$rep" f32
            fi
        done
    done
done
stop_busy
busy_pids=()

mmm_commit=${MMM_COMMIT:-$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src include Makefile || echo +dirty)}
"$py" - "$log/meta.json" <<EOF
import json, sys
json.dump({"benchmark": "decode and prefill, mmm against llama.cpp (bench/llama_cpp/compare.sh)",
           "device": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores ($(grep -m1 '^flags' /proc/cpuinfo | grep -ow 'avx2\|fma\|avx512f\|avx512_vnni\|avx512_bf16' | sort -u | xargs))",
           "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "mmm_commit": "$mmm_commit", "mmm": "$("$mmm" version)",
           "llama_cpp_commit": "$llama_commit", "threads": $threads, "reps": $reps, "steps": $steps,
           "dims": "${dims:-mmm bench defaults: hidden=256,layers=8+24,heads=4,kv=2,ffn=1024,vocab=1024}", "busy_processes": $busy,
           "command": "bench/llama_cpp/compare.sh --contexts $contexts --prefill $prefill --reps $reps --steps $steps --threads $threads --kinds $kinds${dims:+ --dims $dims} --busy $busy$([ $keep_coretype = 1 ] && echo ' --keep-coretype')",
           "load_before": "$load_before", "load_after": "$(cut -d' ' -f1-3 /proc/loadavg)",
           "units": {"decode_ms": "ms per token, lower is better", "prefill_tps": "tokens per second, higher is better"},
           "quantization_kl": [json.loads(l) for l in open("$log/kl.jsonl")] if $check else []},
          open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$(dirname "$out")"
"$py" "$here/summarize.py" "$samples" "$log/meta.json" "$out" "${out%.json}.md"
echo "compare.sh: $out, ${out%.json}.md (raw runs in $log)"
