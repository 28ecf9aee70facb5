#pragma once
// `ra bench transport` (issue #4 item 7): the per-layer round trip of the worker↔retriever exchange over
// shm, UCX and MPI point-to-point, with the search replaced by a no-op (round_trip.h).
// For each (transport, R in 1..--max-retrievers) it runs
//   mpirun [--allow-run-as-root] --oversubscribe --bind-to none -n 1+R ra-bench-transport ...
// (ra-bench-transport is built beside `ra` when MPI is found), then prints one table row per run and
// writes the rows' JSON objects, one per line, to --json.

#include <CLI/CLI.hpp>

namespace ra {

// Registers `transport` under `bench` (the subcommand made by add_bench_command).
void add_bench_transport_command(CLI::App& bench);

}  // namespace ra
