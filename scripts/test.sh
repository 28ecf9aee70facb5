#!/usr/bin/env bash
# The whole test suite: set up, build, and run every ctest (labels unit, model, mpi, gpu). Tests that
# need the shared models or a GPU skip with a reason when those are absent. Extra arguments go to ctest
# (e.g. -L unit).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${RA_BUILD_DIR:-$root/build}
bash "$root/scripts/build.sh"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
