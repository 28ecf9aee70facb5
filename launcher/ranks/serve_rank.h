#pragma once
// The worker rank of `ra serve` and `ra prefill --save` (launcher/cli/serve_command.h). ra-gpu-worker
// runs this instead of decoding its one prompt when the environment holds a serve spec (RA_SERVE,
// gpu_worker/serve/serve_spec.h). The start is the worker's (plan, model, channels, handshake); then:
//   serve:   the OpenAI-compatible HTTP server (gpu_worker/serve/server.h) over a PipelineEngine,
//            listening before the model loads (/health answers 503 "loading" meanwhile); with `load`, a
//            saved context is restored and registered first. It serves until SIGINT/SIGTERM/SIGHUP
//            (exit 128 + N), or until the engine fails (a retriever died or stopped answering): the
//            request in flight gets 503 naming the retriever, /health answers 503 for the spec's grace
//            period, then the rank exits 1 and mpirun ends the job.
//   prefill: prefills the plan's prompt as a context, writes it to `save` with every layer's shipped
//            rows, tells the retrievers to leave and exits 0.
// Errors are ra::Error (run_pipeline_process reports them with rank and host and exits 1).

#include <string>

#include "launcher/plan/run_plan.h"
#include "transport/bootstrap/mpi_session.h"

namespace ra {

// The serve spec when this worker rank serves (the environment's RA_SERVE), else null.
const char* serve_spec_from_environment();

// `spec_json`: the RA_SERVE text.
int run_serve_rank(transport::MpiSession& mpi, const RunPlan& plan, const std::string& spec_json);

}  // namespace ra
