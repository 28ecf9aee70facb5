#pragma once
// `ra bench retrieval`: recall / keys-scanned / latency / build-cost sweep of every key index over the
// real query/key vectors of a `ra dump-qkv` directory (issue #3). One JSON object per line per
// (index, knob), aggregated over the selected layers and query heads.

#include <CLI/CLI.hpp>

namespace ra {

// Registers `retrieval` under `bench` (the `ra bench` group, launcher/cli/bench_command.h).
void add_bench_retrieval_command(CLI::App& bench);

}  // namespace ra
