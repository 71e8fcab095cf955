#!/usr/bin/env bash
# Configures and builds flashkm into ${FLASHKM_BUILD:-build} (Release), with the CUDA backend
# when the toolkit is at /usr/local/cuda (sm_90 unless CMAKE_CUDA_ARCHITECTURES is given).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FLASHKM_BUILD:-build}
args=(-DCMAKE_BUILD_TYPE=Release)
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
# Show only flashkm's own configure lines (backend, layers); the rest is noise.
cmake -S . -B "$build" "${args[@]}" "$@" | { grep -E "^-- flashkm|CMake (Error|Warning)" || true; }
cmake --build "$build" -j"$(nproc)"
