#pragma once
// What a process that serves does around its Server (gpu_worker/serve/server.h): the server's flags,
// the port file, and the wait for a stop signal. Shared by ra-serve-inproc (serve_main.cpp), `ra serve`
// in process (launcher/cli/serve_command.cpp) and the serving worker rank (launcher/ranks/serve_rank.cpp).

#include <CLI/CLI.hpp>
#include <signal.h>

#include <string>

#include "gpu_worker/serve/server_options.h"

namespace ra::serve {

// --host, --port, --port-file, --queue, --http-threads, --max-contexts, --default-max-tokens,
// --request-timeout and --quiet, into `options` and `port_file`.
void add_server_flags(CLI::App& app, ServeOptions& options, std::string& port_file);

// Writes `port` and a newline to `path` (through a temporary file and a rename, so a reader never sees
// it half-written); nothing when `path` is empty. Throws ra::Error naming the path.
void write_port_file(const std::string& path, int port);

// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread started after it; returns the set
// for wait_for_stop_signal.
sigset_t block_stop_signals();

// Waits, a second at a time, until one of `signals` arrives; returns it.
int wait_for_stop_signal(const sigset_t& signals);

}  // namespace ra::serve
