#pragma once
// `ra bench accuracy` (issue 17): every attention mode on the same prompts in one run, at matched search
// budgets (accuracy_eval.h).
//
//   ra bench accuracy --model ../shared/models/needle-byte-13m --lengths 4096,16384,32768,65536
//     --modes full,window,flat,ivf,hnsw,retrieval --scan 0.01,0.02,0.05 --text /usr/include/sqlite3.h
//     --json accuracy.json --plot accuracy.png

#include <CLI/CLI.hpp>

namespace ra {

// Registers `accuracy` under `bench` (the subcommand made by add_bench_command).
void add_bench_accuracy_command(CLI::App& bench);

}  // namespace ra
