#!/usr/bin/env bash
# On the GPU machine (16 cores): build everything (CUDA on), run the unit, mpi and gpu tests, and
# `ra bench transport` over shm, UCX and MPI with 1..4 retrievers. Results go to $OUT (default: out/).
#   usage (device tool, carry .device; needle-byte-13m copied to .device/models/ for the model tests):
#     source .device/bootstrap.sh && scripts/device_pipeline.sh
set -euo pipefail
out=${OUT:-out}
mkdir -p "$out"
models=${RA_SHARED_MODELS_DIR:-$PWD/.device/models}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DRA_SHARED_MODELS_DIR="$models" > "$out/configure.txt" 2>&1 || { tail -30 "$out/configure.txt"; exit 1; }
{ time cmake --build build-gpu -j"$(nproc)"; } > "$out/build.txt" 2>&1 || { grep -B2 -A8 error "$out/build.txt" | head -60; exit 1; }
{ time ctest --test-dir build-gpu -j8 -L "gpu|mpi|unit" --output-on-failure; } > "$out/ctest.txt" 2>&1 || true
tail -25 "$out/ctest.txt"
{ date -u; echo "cores: $(nproc)"; lscpu | grep -E 'Model name|NUMA node\(s\)'; grep PRETTY_NAME /etc/os-release
  mpirun --version | head -1; ucx_info -v 2>/dev/null | head -2 || true; } > "$out/machine.txt" 2>&1 || true
ra=build-gpu/launcher/ra
echo "$ra bench transport --transports shm,ucx,mpi --max-retrievers 4 --iterations 20000 --warmup 2000" > "$out/command.txt"
timeout 240 "$ra" bench transport --transports shm,ucx,mpi --max-retrievers 4 --iterations 20000 --warmup 2000 \
  --json "$out/transport.json" > "$out/transport.txt" 2> "$out/transport.err" || true
cat "$out/transport.txt"
