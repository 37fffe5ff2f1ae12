#!/usr/bin/env bash
# Installs the Debian packages mmm builds and runs with; does nothing when all are present.
set -euo pipefail

packages=(
  build-essential      # gcc, make
  pkg-config
  libopenblas-openmp-dev  # OpenBLAS built with OpenMP: nested calls inside our parallel regions stay single-threaded
  libcjson-dev         # JSON (safetensors headers, configs, JSONL)
  libstb-dev           # stb_image (PNG/JPEG/BMP/PPM)
  zlib1g-dev           # gzip (Fashion-MNIST files)
  libjpeg62-turbo-dev  # JPEG through libjpeg-turbo (libjpeg API), the decoder Pillow uses (pixel-exact tiles)
  libwebp-dev          # WebP images
  libonig-dev          # Oniguruma: the regex engine of Hugging Face tokenizers' Split pre-tokenizers
  libmicrohttpd-dev    # the HTTP server of `mmm serve`
  curl                 # the HTTP client of tests/serve/serve_clients.sh
  libomp-dev           # OpenMP runtime for clang builds (fuzzing, sanitizers)
  dataset-fashion-mnist
  # plots: the `gnuplot` program. Debian's `gnuplot` package is only a choice of builds whose first,
  # gnuplot-qt, brings a Qt/X11 stack; gnuplot-nox provides `gnuplot` without one (same program).
  gnuplot-nox
  time                 # /usr/bin/time: peak memory of each case in tests/robust/small_inputs.sh
  openmpi-bin          # mpirun: tests/train/test_data_parallel.c starts ranks with it, as users may
)

# `scripts/deps.sh fuzz` also installs what the libFuzzer harnesses need
[ "${1:-}" = fuzz ] && packages+=(clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "mmm: installing missing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "mmm: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; refresh them once if the install fails without them.
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" \
  || { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; }
