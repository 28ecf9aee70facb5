#pragma once
// The statistics block every generate run prints to stderr (DESIGN §5): speeds, and for runs with
// retrievers the retrieval counters per token and in total.

#include <cstdio>
#include <functional>
#include <span>
#include <string>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/decode/generator.h"
#include "gpu_worker/offload/retrieval_client.h"
#include "launcher/config/run_config.h"

namespace ra {

// retrieval may be null (modes full and window).
void print_run_stats(std::FILE* out, const Backend& backend, const RunConfig& config, const GenerateStats& stats,
                     const RetrievalStats* retrieval);

// The same figures as JSON, for benchmarks (`ra bench decode` runs the offloaded modes through `ra
// generate --report-json`): mode, backend, prompt and generated tokens, prefill seconds and the build tail
// after it, decode step p50/p99/mean/first ms, the retrieval breakdown per token (round trips, between
// layers, q out / retriever / partials back in us, retrievers' and waited ms, keys scanned), this
// process's peak RSS and the backend's device memory (weights and peak). Throws ra::Error naming the
// file when it cannot be written.
void write_run_report_json(const std::string& path, const Backend& backend, const RunConfig& config,
                           const GenerateStats& stats, const RetrievalStats* retrieval);

// A GenerateOptions::on_progress that prints one line per call: tokens so far, the mean, p50 and max of
// the decode steps since the last call, and with `retrieval` (the client's live counters; may be null)
// the retrievers' time, the worker's wait and the keys scanned per query head over those steps.
std::function<void(const GenerateStats&)> progress_printer(std::FILE* out, const RetrievalStats* retrieval);

// When the environment names a file in RA_LOGITS_TRACE, a callback for GenerateOptions::on_logits that
// appends each step's logits to it as raw float32 ([steps][vocab], host byte order): the pipeline tests
// compare modes with it. Otherwise an empty function. Throws ra::Error naming the file if it cannot
// be created.
std::function<void(std::span<const float>)> logits_trace_from_env();

}  // namespace ra
