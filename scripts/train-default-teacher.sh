#!/usr/bin/env bash
# Rebuilds the shipped default teacher, models/teacher-fmnist, with the demo's own recipe
# (Fashion-MNIST data, a byte-level BPE tokenizer trained on its texts, `mmm train` with the
# settings in src/cli/cmd_demo.c). About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/mmm
rm -rf runs/default-teacher
./build/mmm demo --teacher-only --out runs/default-teacher
rm -rf models/teacher-fmnist
mkdir -p models
cp -r runs/default-teacher/teacher models/teacher-fmnist
rm -rf models/teacher-fmnist/checkpoints models/teacher-fmnist/*.dat models/teacher-fmnist/*.gp models/teacher-fmnist/*.jsonl
echo "models/teacher-fmnist rebuilt"
