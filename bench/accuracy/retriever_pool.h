#pragma once
// One mode's retrievers inside this process (ra bench accuracy): the RetrieverService of every retriever
// rank of a plan, each on its own thread, reached over in-process channels, and the worker's
// RetrievalClient for them. The services are configured by retriever_service_config, as the
// ra-cpu-retriever ranks of an mpirun job are: only the processes and the transport differ.

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cpu_retriever/retriever_service.h"
#include "gpu_worker/offload/prefill_capture.h"
#include "gpu_worker/offload/retrieval_client.h"
#include "launcher/plan/run_plan.h"
#include "transport/channel.h"
#include "transport/heartbeat.h"

namespace ra::bench {

class RetrieverPool {
 public:
  // The retrievers of `plan` for a model of `model` (geometry checked at the handshake). scan_fractions:
  // the budgets every shard fits at its build (ShardIndexParams::scan_fractions; empty: none).
  RetrieverPool(const RunPlan& plan, const ModelConfig& model, const std::vector<double>& scan_fractions,
                bool audit_recall);
  ~RetrieverPool();  // kShutdown, then joins the services
  RetrieverPool(const RetrieverPool&) = delete;
  RetrieverPool& operator=(const RetrieverPool&) = delete;

  RetrievalClient& client() { return *client_; }

  // Ships every layer of a prefill `capture` holds (it must hold them all: no shipper released any, and
  // in the forms client().kv_rows() names: every pool of one spec takes the same) and waits for the builds; then the retrievers hold exactly the prompt's offloaded set, and each decode
  // that follows can be undone by rewind().
  void build(const PrefillCapture& capture, int64_t prompt_tokens);
  // Back to the state right after build(): the tokens evicted since are dropped (kRewind).
  void rewind();
  // Search knobs of the next steps: budget `scan_budget` of scan_fractions (ef and nprobe from the config
  // when there are none).
  void use_budget(int scan_budget);

 private:
  void stop() noexcept;  // kShutdown to the services, then joins them

  std::vector<std::unique_ptr<transport::Channel>> worker_ends_;
  std::vector<std::thread> services_;
  std::unique_ptr<transport::HeartbeatThread> heartbeat_;
  std::unique_ptr<RetrievalClient> client_;
  int top_k_, ef_, nprobe_;
  int64_t sinks_, window_;
  int64_t rewind_to_ = 0;
};

}  // namespace ra::bench
