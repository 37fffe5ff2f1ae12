#!/usr/bin/env bash
# Builds, checks and times the CUDA backend in one call on a GPU machine.
#   bench/run_gpu.sh [--quick]            build here (nvcc and the build dependencies), then run
#   bench/run_gpu.sh pack DIR             build here and copy the binaries (mmm, mmm_tests,
#                                         bench_cuda) and the shared libraries they need into DIR,
#                                         for a GPU machine that cannot build
#   bench/run_gpu.sh [--quick] DIR        run the binaries packed in DIR
# Runs: the CUDA op and GPU model tests (tests/cuda), bench_cuda (and its SSD chunk-length
# table), the training-step benchmark (mmm bench --train-step), the whole model's prefill, decode
# and memory (mmm bench --device cuda --dtype bf16), the PyTorch baselines (if torch is there)
# and the joined report.
# Output: $OUT (default build-gpu/out): tests.log, bench.log, mmm.json,
# torch.json, report.md; the report is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = pack ]; then
    dir=${2:?usage: bench/run_gpu.sh pack DIR}
    # a separate build for portable x86-64 (AVX2) code: the GPU machine's processor may differ
    make -j"$(nproc)" BUILD=build-gpu OPT="-O3 -march=x86-64-v3" build-gpu/mmm build-gpu/mmm_tests build-gpu/bench_cuda
    mkdir -p "$dir/lib"
    cp build-gpu/mmm build-gpu/mmm_tests build-gpu/bench_cuda "$dir/"
    # every shared library except the C runtime itself, which the GPU machine has (newer)
    ldd build-gpu/mmm build-gpu/mmm_tests build-gpu/bench_cuda | awk '/=> \//{print $3}' | sort -u |
        grep -Ev '/(libc|libm|libmvec|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so' |
        while read -r lib; do cp -L "$lib" "$dir/lib/"; done
    echo "packed into $dir: $(ls "$dir" "$dir/lib" | tr '\n' ' ')"
    exit 0
fi

quick=
if [ "${1:-}" = --quick ]; then quick=--quick; shift; fi
out=${OUT:-build-gpu/out}
mkdir -p "$out"
if [ -n "${1:-}" ]; then
    bin=$1
    export LD_LIBRARY_PATH="$PWD/$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # the CLI tests run build/mmm
    [ -e build/mmm ] || { mkdir -p build && ln -s "../$bin/mmm" build/mmm; }
else
    make -j"$(nproc)" build/mmm_tests build/bench_cuda
    bin=build
fi

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
echo "== CUDA op tests"
"$bin/mmm_tests" cuda gpu_model 2>&1 | tee "$out/tests.log" | grep -E '^(FAIL|cuda device|[0-9]+ passed)' || true
echo "== bench_cuda"
"$bin/bench_cuda" $quick --json "$out/mmm.json" 2>&1 | tee "$out/bench.log"
"$bin/bench_cuda" --ssd-chunks --json "$out/ssd_chunks.json" 2>&1 | tee -a "$out/bench.log"
echo "== training steps at HoVLE-2.6B size (1024 tokens, bf16 GEMMs)"
"$bin/mmm" bench --train-step --device cuda --dtype bf16 --tokens 1024 \
    --dims hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544 --json "$out/train_step.json" 2>&1 |
    tee "$out/train_step.log"
echo "== the whole model at HoVLE-2.6B size: prefill, decode and memory (mmm bench, bf16 weights)"
contexts=1K,8K,32K,64K,103K
[ -n "$quick" ] && contexts=1K,32K
for kind in teacher hybrid linear; do
    "$bin/mmm" bench --device cuda --dtype bf16 --dims hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544 \
        --kinds $kind --contexts $contexts --prefill-max 105472 --steps 8 --json "$out/model_$kind.json" 2>&1 |
        tee -a "$out/model.log"
done
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    echo "== PyTorch baseline"
    env -u LD_LIBRARY_PATH python3 bench/cuda/baseline.py $quick --json "$out/torch.json" 2>&1 | tee "$out/torch.log"
    env -u LD_LIBRARY_PATH python3 bench/cuda/baseline_train.py $quick --tokens 1024 --json "$out/torch_train.json" 2>&1 |
        tee "$out/torch_train.log"
    json=$(cd "$out" && pwd)/torch_prefill.json # baseline_prefill.py runs beside the module it imports
    (cd bench/cuda && env -u LD_LIBRARY_PATH python3 baseline_prefill.py --contexts $contexts --json "$json") 2>&1 |
        tee "$out/torch_prefill.log"
    echo "== report"
    python3 bench/cuda/report.py "$out/mmm.json" "$out/torch.json" | tee "$out/report.md"
fi
grep -E '^[0-9]+ passed' "$out/tests.log"
