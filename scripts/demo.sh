#!/usr/bin/env bash
# The main job: installs what is missing, builds, then clusters a generated data set with
# `flashkm kmeans` (1M x 128 would take a while on 2 cores; 200k x 64 into 256 clusters here).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bin=${FLASHKM_BUILD:-build}/tools/flashkm
work=${FLASHKM_DEMO_DIR:-flashkm-demo}
mkdir -p "$work"
"$bin" gen --n 200000 --d 64 --centers 256 --seed 1 --output "$work/x.npy"
"$bin" kmeans --input "$work/x.npy" --k 256 --iters 25 --output "$work/centroids.npy" \
  --labels "$work/labels.npy"
