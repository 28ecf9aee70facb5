#include "launcher/ranks/run_report.h"

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "common/error.h"

namespace ra {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Decode step times in ms: p50, p99, max, first (zeros without steps).
struct StepMs {
  double p50 = 0, p99 = 0, max = 0, first = 0, mean = 0;
};
StepMs step_ms(const GenerateStats& stats) {
  StepMs out;
  if (stats.step_seconds.empty()) return out;
  std::vector<double> ms(stats.step_seconds);
  std::sort(ms.begin(), ms.end());
  auto at = [&](double f) { return 1e3 * ms[std::min(ms.size() - 1, static_cast<size_t>(f * static_cast<double>(ms.size())))]; };
  out.p50 = at(0.5);
  out.p99 = at(0.99);
  out.max = 1e3 * ms.back();
  out.first = 1e3 * stats.step_seconds.front();
  double sum = 0;
  for (const double s : ms) sum += s;
  out.mean = 1e3 * sum / static_cast<double>(ms.size());
  return out;
}

double peak_rss_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0 / kGiB;
}

}  // namespace

void print_run_stats(std::FILE* out, const Backend& be, const RunConfig& c, const GenerateStats& stats,
                     const RetrievalStats* r) {
  const std::string backend = be.name();
  const double prefill_tps = stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0;
  const int64_t steps = std::max<int64_t>(0, stats.generated_tokens - 1);  // the first token comes from prefill
  const double decode_tps = stats.decode_seconds > 0 ? steps / stats.decode_seconds : 0.0;
  std::fprintf(out,
               "\nbackend: %s, mode: %s\nprompt tokens: %lld\nprefill: %.1f tokens/s (%.3f s)\n"
               "decode: %.1f tokens/s (%lld steps in %.3f s; %lld tokens generated)\n",
               backend.c_str(), std::string(name(c.mode)).c_str(), static_cast<long long>(stats.prompt_tokens),
               prefill_tps, stats.prefill_seconds, decode_tps, static_cast<long long>(steps), stats.decode_seconds,
               static_cast<long long>(stats.generated_tokens));
  if (!stats.step_seconds.empty()) {
    const StepMs ms = step_ms(stats);
    std::fprintf(out, "decode step: p50 %.3f ms, p99 %.3f ms, max %.3f ms, first %.3f ms\n", ms.p50, ms.p99, ms.max,
                 ms.first);
  }
  if (c.mode != AttentionMode::kFull) {
    std::fprintf(out, "static set: %lld sinks + %lld window\n", static_cast<long long>(c.sinks),
                 static_cast<long long>(c.window));
  }
  if (r != nullptr && r->steps > 0) {
    const double per_token = steps > 0 ? 1e3 / static_cast<double>(steps) : 0.0;
    const double scanned = r->query_heads_searched > 0
                               ? static_cast<double>(r->distance_computations) / static_cast<double>(r->query_heads_searched)
                               : 0.0;
    std::fprintf(out,
                 "index build: %.3f s from the first layer shipped to the last built (overlapping the prefill); "
                 "%.3f s of it after the prefill\n"
                 "retrieval: %.3f ms/token on the retrievers, %.3f ms/token waited by the worker "
                 "(transport + retrieval not overlapped)\n"
                 "keys scanned: %.1f per query head (%.2f%% of %lld offloaded keys)\n",
                 r->build_seconds, stats.after_prefill_seconds, r->remote_seconds * per_token, r->wait_seconds * per_token, scanned,
                 r->offloaded_keys > 0 ? 100.0 * scanned / static_cast<double>(r->offloaded_keys) : 0.0,
                 static_cast<long long>(r->offloaded_keys));
    // The decode breakdown: the round trips, split where the clocks allow (same host), and the worker's
    // own work between them.
    std::fprintf(out, "per token: %.3f ms in %lld round trips, %.3f ms between layers on the worker",
                 r->round_trip_seconds * per_token, static_cast<long long>(r->steps / std::max<int64_t>(1, steps)),
                 r->between_layers_seconds * per_token);
    if (r->timeline_steps > 0) {
      const double split = static_cast<double>(r->timeline_steps) / static_cast<double>(r->steps);
      std::fprintf(out, "; of a round trip (%.0f%% of them timed on one clock): q out %.1f us, retriever %.1f us, "
                   "partials back %.1f us",
                   100.0 * split, 1e6 * r->q_out_seconds / static_cast<double>(r->timeline_steps),
                   1e6 * r->retriever_seconds / static_cast<double>(r->timeline_steps),
                   1e6 * r->partial_back_seconds / static_cast<double>(r->timeline_steps));
    }
    std::fprintf(out, "\n");
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::fprintf(out, "peak host memory (this process): %.1f MiB\n", static_cast<double>(usage.ru_maxrss) / 1024.0);
  if (const auto gpu = be.device_memory()) {
    std::fprintf(out, "peak GPU memory (this backend's allocations; the CUDA context not counted): %.2f GiB, of it "
                 "weights %.2f GiB (+%.2f GiB)\n",
                 static_cast<double>(gpu->peak_bytes) / kGiB, static_cast<double>(gpu->weights_bytes) / kGiB,
                 static_cast<double>(gpu->peak_bytes - gpu->weights_bytes) / kGiB);
  }
  if (stats.hit_context_limit) {
    // The cache holds the prompt and every generated token but the last (never fed back).
    std::fprintf(out, "stopped: the KV cache is full (%lld positions) after %lld of the %lld tokens asked\n",
                 static_cast<long long>(stats.prompt_tokens + stats.generated_tokens - 1),
                 static_cast<long long>(stats.generated_tokens), static_cast<long long>(c.max_new_tokens));
  }
}

std::function<void(const GenerateStats&)> progress_printer(std::FILE* out, const RetrievalStats* retrieval) {
  struct State {
    size_t steps = 0;             // steps reported so far
    RetrievalStats last;          // the counters at the last report
    std::vector<double> window;   // reused: no allocation after the first report
  };
  auto state = std::make_shared<State>();
  return [out, retrieval, state](const GenerateStats& stats) {
    State& s = *state;
    const size_t n = stats.step_seconds.size() - s.steps;
    if (n == 0) return;
    s.window.assign(stats.step_seconds.end() - static_cast<std::ptrdiff_t>(n), stats.step_seconds.end());
    double sum = 0, max = 0;
    for (const double v : s.window) {
      sum += v;
      max = std::max(max, v);
    }
    std::nth_element(s.window.begin(), s.window.begin() + static_cast<std::ptrdiff_t>(n / 2), s.window.end());
    std::fprintf(out, "progress: %lld tokens; the last %zu steps: mean %.3f ms, p50 %.3f ms, max %.3f ms",
                 static_cast<long long>(stats.generated_tokens), n, 1e3 * sum / static_cast<double>(n),
                 1e3 * s.window[n / 2], 1e3 * max);
    if (retrieval != nullptr) {
      const RetrievalStats& r = *retrieval;
      const double heads = static_cast<double>(r.query_heads_searched - s.last.query_heads_searched);
      std::fprintf(out, "; retrievers %.3f ms/token, waited %.3f ms/token, %.1f keys scanned per query head",
                   1e3 * (r.remote_seconds - s.last.remote_seconds) / static_cast<double>(n),
                   1e3 * (r.wait_seconds - s.last.wait_seconds) / static_cast<double>(n),
                   heads > 0 ? static_cast<double>(r.distance_computations - s.last.distance_computations) / heads
                             : 0.0);
      s.last = r;
    }
    std::fprintf(out, "\n");
    std::fflush(out);
    s.steps = stats.step_seconds.size();
  };
}

std::function<void(std::span<const float>)> logits_trace_from_env() {
  const char* path = std::getenv("RA_LOGITS_TRACE");
  if (path == nullptr || *path == '\0') return {};
  std::shared_ptr<std::FILE> file(std::fopen(path, "wb"), [](std::FILE* f) {
    if (f) std::fclose(f);
  });
  RA_REQUIRE(file != nullptr, "RA_LOGITS_TRACE={}: cannot create it: {}", path, std::strerror(errno));
  return [file](std::span<const float> logits) {
    std::fwrite(logits.data(), sizeof(float), logits.size(), file.get());
    std::fflush(file.get());
  };
}

void write_run_report_json(const std::string& path, const Backend& backend, const RunConfig& c,
                           const GenerateStats& stats, const RetrievalStats* r) {
  using nlohmann::json;
  const int64_t steps = std::max<int64_t>(0, stats.generated_tokens - 1);
  const StepMs ms = step_ms(stats);
  json j;
  j["backend"] = backend.name();
  j["mode"] = std::string(name(c.mode));
  j["prompt_tokens"] = stats.prompt_tokens;
  j["generated_tokens"] = stats.generated_tokens;
  j["decode_steps"] = steps;
  j["prefill_s"] = stats.prefill_seconds;
  j["build_tail_s"] = stats.after_prefill_seconds;  // of prefill_s: waiting for the retrievers' indexes
  j["decode_s"] = stats.decode_seconds;
  j["decode_ms"] = {{"p50", ms.p50}, {"p99", ms.p99}, {"mean", ms.mean}, {"max", ms.max}, {"first", ms.first}};
  j["sinks"] = c.mode == AttentionMode::kFull ? 0 : c.sinks;
  j["window"] = c.mode == AttentionMode::kFull ? 0 : c.window;
  j["worker_peak_rss_gib"] = peak_rss_gib();
  if (const auto gpu = backend.device_memory()) {
    j["gpu_weights_gib"] = static_cast<double>(gpu->weights_bytes) / kGiB;
    j["gpu_peak_gib"] = static_cast<double>(gpu->peak_bytes) / kGiB;  // allocations; the CUDA context not counted
  }
  if (r != nullptr && r->steps > 0 && steps > 0) {
    const double per_token = 1e3 / static_cast<double>(steps);  // seconds summed over steps -> ms per token
    const double timed = static_cast<double>(std::max<int64_t>(1, r->timeline_steps));
    json rt;
    rt["round_trips_per_token"] = r->steps / steps;
    rt["round_trips_ms_per_token"] = r->round_trip_seconds * per_token;
    rt["between_layers_ms_per_token"] = r->between_layers_seconds * per_token;
    rt["retrievers_ms_per_token"] = r->remote_seconds * per_token;
    rt["waited_ms_per_token"] = r->wait_seconds * per_token;
    rt["q_out_us"] = 1e6 * r->q_out_seconds / timed;
    rt["retriever_us"] = 1e6 * r->retriever_seconds / timed;
    rt["partials_back_us"] = 1e6 * r->partial_back_seconds / timed;
    rt["timed_round_trips"] = r->timeline_steps;
    const double scanned = r->query_heads_searched > 0 ? static_cast<double>(r->distance_computations) /
                                                             static_cast<double>(r->query_heads_searched)
                                                       : 0.0;
    rt["keys_scanned_per_query_head"] = scanned;
    rt["offloaded_keys"] = r->offloaded_keys;
    rt["scanned_fraction"] = r->offloaded_keys > 0 ? scanned / static_cast<double>(r->offloaded_keys) : 0.0;
    rt["build_s"] = r->build_seconds;
    rt["build_bytes"] = r->build_bytes;
    j["retrieval"] = rt;
  }
  std::ofstream out(path);
  RA_REQUIRE(out.good(), "--report-json {}: cannot create the file ({})", path, std::strerror(errno));
  out << j.dump(2) << "\n";
  RA_REQUIRE(out.good(), "--report-json {}: write failed", path);
}

}  // namespace ra
