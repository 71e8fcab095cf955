#!/usr/bin/env bash
# Installs the Debian 12 packages flashkm builds and tests with, when any is missing.
# Run as root on a fresh machine; a no-op when everything is present.
set -euo pipefail
pkgs=(cmake g++ make pkg-config
      libfaiss-dev libopenblas-dev
      librocksdb-dev libprotobuf-dev protobuf-compiler
      libfmt-dev libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
