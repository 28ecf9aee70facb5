#pragma once
// One row of `ra bench decode` for an offloaded mode (flat, ivf, hnsw, retrieval; issue 16 item 6): the
// real pipeline, not a model of it. The row is an `ra generate` job started the way a user starts one
// (mpirun, the worker and its retriever ranks, shm or UCX), on a config written for it, whose figures
// come back through `--report-json`; a sampler beside it reads /proc every 0.5 s for each rank's RSS
// and threads, which no rank reports about the others.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpu_worker/model/model_config.h"

namespace ra {

struct OffloadedRunSpec {
  std::string mode;                 // flat, ivf, hnsw or retrieval
  int64_t context = 0;              // prompt tokens (BOS included)
  int decode_steps = 0;             // timed steps (the report's p50/p99 are over all decode steps)
  std::string backend = "auto";     // of the worker
  const ModelConfig* geometry = nullptr;  // random weights of this shape; null = the embedded demo model
  std::string model;                // or a checkpoint directory
  int64_t sinks = 128, window = 512;
  int retrievers = 4;
  int retriever_threads = 0;        // 0 = the launcher's plan
  std::string transport = "shm";
  double scan_fraction = 0;         // > 0: index.scan_fraction (every ANN mode at the same budget)
  std::vector<std::string> index_settings;  // extra "key: value" lines under index:
  uint64_t seed = 1;
  int timeout_s = 1800;             // the job is killed past this
  std::string work_dir;             // its config, report and log go here (kept)
};

// Runs the job and returns its row: the report's figures (decode ms p50/p99/mean, prefill and build tail,
// the retrieval breakdown, keys scanned) with peak RSS and threads per rank. A job that fails or runs
// out of time gives a row with "skipped" (its exit status and the log's last lines), never an exception.
nlohmann::json run_offloaded_row(const OffloadedRunSpec& spec);

}  // namespace ra
