#pragma once
// `ra serve`: the OpenAI-compatible HTTP server (docs/serve.md) over the whole pipeline, and
// `ra prefill --save DIR`: a prefilled context written to disk for `ra serve --load DIR`.
//
// Both take generate's run config (--config, --mode, --model, ... and --dry-run). Modes flat, ivf, hnsw
// and retrieval start the same mpirun job as `ra generate` (worker rank + retriever ranks; the worker
// serves, launcher/ranks/serve_rank.h, told how through RA_SERVE); modes full and window run in this
// process. The exit code is the job's (mpirun's), or this process's.

#include <CLI/CLI.hpp>

namespace ra {

void add_serve_command(CLI::App& app);
void add_prefill_command(CLI::App& app);

}  // namespace ra
