#!/usr/bin/env bash
# Side-by-side CPU Lloyd benchmark (issue: foundation performance): flashkm, faiss 1.7.3
# Clustering (all points, same init), scikit-learn 1.2 lloyd (same data, same init) and the
# OpenBLAS sgemm floor, one process each, one after another on the same data.
#   bash bench/run_cpu_bench.sh [BUILD_DIR] [N] [D] [K] [ITERS]
set -euo pipefail
build=${1:-build}; n=${2:-1000000}; d=${3:-128}; k=${4:-1024}; iters=${5:-5}
bin=$build/bench/bench_kmeans_cpu
out=${BENCH_OUT:-$build/bench-results}; mkdir -p "$out"
common=(--n "$n" --d "$d" --k "$k" --iters "$iters")
for impl in sgemm flashkm faiss; do
  "$bin" --impl "$impl" "${common[@]}" --json "$out/$impl.json"
done
# faiss's OpenMP threads spin between parallel regions; passive waiting is its best case.
OMP_WAIT_POLICY=PASSIVE "$bin" --impl faiss "${common[@]}" --json "$out/faiss-passive.json" | sed 's/^faiss   /faiss(P)/'
if python3 -c "import sklearn, threadpoolctl" 2>/dev/null; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$bin" --dump "$tmp" "${common[@]}"
  # OPENBLAS_CORETYPE slows numpy's own OpenBLAS where it is set (see the env notes).
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 "$(dirname "$0")/peers_cpu.py" \
    --dir "$tmp" --iters "$iters" --json "$out/sklearn.json"
else
  echo "scikit-learn not installed: pip install -r bench/requirements-peers.txt" >&2
fi
