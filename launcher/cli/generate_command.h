#pragma once
// `ra generate`: decode a prompt and print the text. Modes full and window run in this process; the
// modes with retrievers (flat, ivf, hnsw, retrieval) are planned and started under mpirun.

#include <CLI/CLI.hpp>

#include <string>

#include "launcher/config/run_config.h"

namespace ra {

// Registers the subcommand and its options (run_config.h) on `app`; the callback runs it.
void add_generate_command(CLI::App& app);

// Runs a resolved config: generated text to stdout only, statistics to stderr. Returns the exit code.
// write_plan: with dry_run, also write the plan file there (empty: do not).
int run_generate(const RunConfig& config, bool print_config, bool dry_run, const std::string& write_plan = {});

}  // namespace ra
