#pragma once
// Runs one job on the engine, on the decode thread: turns its tokens into text (whole UTF-8
// characters, the tokenizer's StreamDecoder), applies its stop strings, feeds the metrics, and ends the
// job in every case (finish, or fail with the ApiError the route will send).

#include "gpu_worker/serve/job.h"
#include "gpu_worker/serve/metrics.h"
#include "gpu_worker/serve/served_model.h"

namespace ra::serve {

void run_job(Job& job, ServedModel& model, Metrics& metrics);

}  // namespace ra::serve
