#!/usr/bin/env bash
# Installs the dependencies (idempotent) and configures + builds the project into $RA_BUILD_DIR
# (default: build/). Extra arguments go to the CMake configure step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${RA_BUILD_DIR:-$root/build}
bash "$root/scripts/setup.sh"
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${RA_BUILD_TYPE:-Release}" "$@" > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
grep -E '^-- (dependencies|retrieval_attention)' "$build/configure.log" || true
cmake --build "$build" -j"$(nproc)"
