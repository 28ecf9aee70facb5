#pragma once
// How a subcommand ends (STYLE §4: only main turns errors into an exit code): its run function returns
// an exit code, and a non-zero one leaves through CLI11 as CLI::RuntimeError, which main's app.exit()
// turns into the process's exit code. Header-only; includers link CLI11.

#include <CLI/CLI.hpp>

namespace ra {

// Sets `cmd`'s callback to run(), an int() callable returning the exit code.
template <typename Run>
void on_run_exit_with(CLI::App& cmd, Run run) {
  cmd.callback([run] {
    if (const int rc = run(); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ra
