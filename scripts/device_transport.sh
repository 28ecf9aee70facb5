#!/usr/bin/env bash
# On the GPU machine (16 cores): build `ra` and ra-bench-transport, then run `ra bench transport` over shm,
# UCX and MPI with R = 1..MAX_RETRIEVERS retrievers, unbound (as the pipeline runs) and once more with
# every rank bound to its own core. Results (table, JSON rows, machine facts) go to $OUT (default: out/).
#   usage (device tool, carry .device): source .device/bootstrap.sh && scripts/device_transport.sh
# Knobs: TRANSPORTS (shm,ucx,mpi), MAX_RETRIEVERS (4), ITERATIONS (20000), WARMUP (2000).
set -euo pipefail
out=${OUT:-out}
mkdir -p "$out"
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DRA_ENABLE_CUDA=OFF -DRA_BUILD_TESTS=OFF > "$out/configure.txt"
cmake --build build-dev -j"$(nproc)" --target ra ra-bench-transport > "$out/build.txt"
ra=build-dev/launcher/ra
{ date -u; echo "cores: $(nproc)"; lscpu | grep -E 'Model name|NUMA node\(s\)'; grep PRETTY_NAME /etc/os-release;
  mpirun --version | head -1; ucx_info -v 2>/dev/null | head -2; } > "$out/machine.txt" 2>&1
args=(--transports "${TRANSPORTS:-shm,ucx,mpi}" --max-retrievers "${MAX_RETRIEVERS:-4}"
      --iterations "${ITERATIONS:-20000}" --warmup "${WARMUP:-2000}")
echo "$ra bench transport ${args[*]} --json $out/transport.json" > "$out/command.txt"
$ra bench transport "${args[@]}" --json "$out/transport.json" > "$out/transport.txt" 2> "$out/transport.err"
$ra bench transport "${args[@]}" --mpirun-arg=--bind-to --mpirun-arg=core --json "$out/transport_bound.json" \
  > "$out/transport_bound.txt" 2> "$out/transport_bound.err"
