#include "gpu_worker/serve/metrics.h"

#include <prometheus/text_serializer.h>

#include <cmath>

namespace ra::serve {
namespace {

// `count` boundaries from `first`, each `factor` times the one before.
prometheus::Histogram::BucketBoundaries exponential(double first, double factor, int count) {
  prometheus::Histogram::BucketBoundaries out;
  for (int i = 0; i < count; ++i) out.push_back(first * std::pow(factor, i));
  return out;
}

constexpr const char* kEndpointNames[kEndpoints] = {"completions", "chat", "contexts"};
constexpr const char* kOutcomeNames[kOutcomes] = {"ok", "cancelled", "invalid", "rejected", "failed"};

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& requests = BuildCounter()
                       .Name("ra_requests_total")
                       .Help("Requests by endpoint and outcome (invalid: 4xx, rejected: queue full, failed: 5xx)")
                       .Register(*registry_);
  for (int e = 0; e < kEndpoints; ++e) {
    for (int o = 0; o < kOutcomes; ++o) {
      requests_[e][o] = &requests.Add({{"endpoint", kEndpointNames[e]}, {"outcome", kOutcomeNames[o]}});
    }
  }
  auto counter = [&](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Register(*registry_).Add({});
  };
  prompt_tokens = counter("ra_prompt_tokens_total", "Prompt tokens of the requests that started (tokens in)");
  prefilled_tokens = counter("ra_prompt_tokens_prefilled_total", "Prompt tokens computed by a prefill");
  reused_tokens = counter("ra_prompt_tokens_reused_total", "Prompt tokens whose KV came from a prebuilt context");
  generated_tokens = counter("ra_generated_tokens_total", "Generated tokens (tokens out)");
  auto histogram = [&](const char* name, const char* help, prometheus::Histogram::BucketBoundaries buckets) {
    return &BuildHistogram().Name(name).Help(help).Register(*registry_).Add({}, std::move(buckets));
  };
  time_to_first_token = histogram("ra_time_to_first_token_seconds",
                                  "From admission (queue included) to the first generated token",
                                  exponential(0.001, 2.0, 20));
  token_latency = histogram("ra_token_latency_seconds", "Wall time of each decode step after the first token",
                            exponential(0.0005, 2.0, 16));
  prefill_seconds = histogram("ra_prefill_seconds", "Prefill time per request that prefilled",
                              exponential(0.001, 2.0, 20));
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
  };
  queue_depth = gauge("ra_queue_depth", "Requests waiting behind the running one");
  running = gauge("ra_requests_running", "Requests being decoded (0 or 1)");
  engine_ready = gauge("ra_engine_ready", "1 when the engine is loaded and healthy");
}

void Metrics::count_request(Endpoint endpoint, Outcome outcome) {
  requests_[static_cast<int>(endpoint)][static_cast<int>(outcome)]->Increment();
}

void Metrics::enable_retrieval() {
  if (keys_scanned_) return;
  keys_scanned_ = &prometheus::BuildCounter()
                       .Name("ra_keys_scanned_total")
                       .Help("Keys the retrievers scored (distance computations)")
                       .Register(*registry_)
                       .Add({});
  round_trip_ = &prometheus::BuildHistogram()
                     .Name("ra_retriever_round_trip_seconds")
                     .Help("Retriever round trip per layer and decode step")
                     .Register(*registry_)
                     .Add({}, exponential(0.000005, 2.0, 20));
}

std::string Metrics::render() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace ra::serve
