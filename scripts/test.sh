#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite (GPU tests skip
# without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir "${FLASHKM_BUILD:-build}" --output-on-failure -j"$(nproc)" --timeout 900
