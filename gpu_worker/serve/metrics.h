#pragma once
// The server's Prometheus metrics (prometheus-cpp; GET /metrics renders them as text):
//   ra_requests_total{endpoint, outcome}  counter    endpoint: completions | chat | contexts;
//                                                    outcome: ok | cancelled | invalid | rejected | failed
//   ra_prompt_tokens_total                counter    tokens in (every prompt token of a started request)
//   ra_prompt_tokens_prefilled_total      counter    prompt tokens computed
//   ra_prompt_tokens_reused_total         counter    prompt tokens served from a prebuilt context's KV
//   ra_generated_tokens_total             counter    tokens out
//   ra_time_to_first_token_seconds        histogram  admitted -> first token
//   ra_token_latency_seconds              histogram  per decode step (the tokens after the first)
//   ra_prefill_seconds                    histogram  per request that prefilled
//   ra_queue_depth                        gauge      requests waiting behind the running one
//   ra_requests_running                   gauge      0 or 1
//   ra_engine_ready                       gauge      1 when /health says ok
// and, once an engine with retrievers is attached (enable_retrieval()):
//   ra_keys_scanned_total                 counter    the retrievers' distance computations
//   ra_retriever_round_trip_seconds       histogram  per layer and decode step
// Observing is lock-free or one short lock; nothing allocates after construction.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <string>

#include "gpu_worker/serve/job.h"

namespace ra::serve {

enum class Outcome { kOk, kCancelled, kInvalid, kRejected, kFailed };
inline constexpr int kOutcomes = 5;

class Metrics {
 public:
  Metrics();

  void count_request(Endpoint endpoint, Outcome outcome);
  // Adds the retrieval families (idempotent); call before a decode thread observes them.
  void enable_retrieval();
  bool retrieval_enabled() const { return keys_scanned_ != nullptr; }

  // The text exposition format (text/plain; version=0.0.4).
  std::string render() const;

  prometheus::Counter* prompt_tokens;
  prometheus::Counter* prefilled_tokens;
  prometheus::Counter* reused_tokens;
  prometheus::Counter* generated_tokens;
  prometheus::Histogram* time_to_first_token;
  prometheus::Histogram* token_latency;
  prometheus::Histogram* prefill_seconds;
  prometheus::Gauge* queue_depth;
  prometheus::Gauge* running;
  prometheus::Gauge* engine_ready;

  prometheus::Counter* keys_scanned() const { return keys_scanned_; }
  prometheus::Histogram* retriever_round_trip() const { return round_trip_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::array<std::array<prometheus::Counter*, kOutcomes>, kEndpoints> requests_{};
  prometheus::Counter* keys_scanned_ = nullptr;
  prometheus::Histogram* round_trip_ = nullptr;
};

}  // namespace ra::serve
