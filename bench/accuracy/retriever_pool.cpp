#include "bench/accuracy/retriever_pool.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "launcher/ranks/retriever_setup.h"
#include "launcher/ranks/worker_setup.h"
#include "transport/inproc_channel.h"

namespace ra::bench {

RetrieverPool::RetrieverPool(const RunPlan& plan, const ModelConfig& model, const std::vector<double>& scan_fractions,
                             bool audit_recall)
    : top_k_(plan.config.index.top_k),
      ef_(plan.config.index.ef),
      nprobe_(plan.config.index.nprobe),
      sinks_(plan.config.sinks),
      window_(plan.config.window) {
  const auto liveness = std::chrono::milliseconds(plan.config.liveness_timeout_ms);
  std::vector<transport::Channel*> channels;
  for (int r = 0; r < plan.num_retrievers(); ++r) {
    const std::string peer = fmt::format("in-process retriever {} ({})", r + 1, name(plan.config.mode));
    auto [worker_end, service_end] = transport::make_inproc_pair("worker", peer, liveness);
    retriever::RetrieverServiceConfig cfg = retriever_service_config(plan, r + 1, peer);
    cfg.index.scan_fractions = scan_fractions;
    cfg.usage_sample_steps = 0;
    services_.emplace_back([cfg, ch = std::shared_ptr<transport::Channel>(std::move(service_end))] {
      transport::HeartbeatThread beat({ch.get()});  // alive while it builds, as the rank is
      try {
        retriever::RetrieverService service(cfg);
        service.serve(*ch);
      } catch (const std::exception& e) {
        // The worker's side reports it (the service told it with kError, or its end is gone).
        std::fprintf(stderr, "%s: %s\n", cfg.name.c_str(), e.what());
      }
    });
    channels.push_back(worker_end.get());
    worker_ends_.push_back(std::move(worker_end));
  }
  try {
    heartbeat_ = std::make_unique<transport::HeartbeatThread>(channels);
    RetrievalClientOptions options = retrieval_client_options(plan, model);
    options.audit_recall = audit_recall;
    client_ = std::make_unique<RetrievalClient>(channels, options);
    client_->handshake(plan_digest(plan), canonical_plan_text(plan));
  } catch (...) {
    stop();  // no destructor runs for a constructor that throws: the service threads are joined here
    throw;
  }
}

RetrieverPool::~RetrieverPool() { stop(); }

void RetrieverPool::stop() noexcept {
  if (client_) client_->shutdown(std::chrono::seconds(10));
  client_.reset();
  heartbeat_.reset();
  worker_ends_.clear();  // a service still waiting sees its peer leave
  for (std::thread& t : services_) t.join();
  services_.clear();
}

void RetrieverPool::build(const PrefillCapture& capture, int64_t prompt_tokens) {
  RA_REQUIRE(capture.kv_rows() == client_->kv_rows(), "retriever pool: the capture holds {}/{} keys/values, the "
             "retrievers take {}/{}", wire_rows_name(capture.kv_rows().key), wire_rows_name(capture.kv_rows().value),
             wire_rows_name(client_->kv_rows().key), wire_rows_name(client_->kv_rows().value));
  for (int64_t l = 0; l < capture.n_layers(); ++l) {
    client_->send_build(l, capture.first_offloaded(), capture.offloaded(), capture.keys(l), capture.values(l),
                        capture.train_rows(), capture.train_queries(l), capture.window_rows(),
                        capture.window_queries(l), capture.list_width(), capture.train_lists(l),
                        capture.key_query_width(), capture.key_queries(l));
  }
  client_->wait_builds();
  // Session mode: from here evicted tokens go to tails a rewind drops, the shards keep the build.
  rewind_to_ = std::max(sinks_, prompt_tokens - window_);
  rewind();
}

void RetrieverPool::rewind() { client_->rewind(rewind_to_, std::chrono::seconds(60)); }

void RetrieverPool::use_budget(int scan_budget) { client_->set_knobs(top_k_, ef_, nprobe_, scan_budget); }

}  // namespace ra::bench
