#!/usr/bin/env bash
# The main job: installs what is missing, builds, then `flashkm demo`: builds a persisted IVF
# index (RocksDB on local disk, coarse quantizer trained exactly by flashkm on the CPU) from
# generated clustered vectors, searches it (recall@10 against brute force, QPS), reopens it,
# re-clusters it and searches again. The index is left in flashkm-demo/index.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p flashkm-demo
"${FLASHKM_BUILD:-build}/tools/flashkm" demo --dir flashkm-demo/index "$@"
