#include "gpu_worker/serve/engine_common.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"
#include "gpu_worker/decode/sampler.h"

namespace ra::serve {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

EngineInfo engine_info(Backend& backend, const std::string& mode, bool has_retrieval) {
  EngineInfo info;
  info.backend = backend.name();
  info.mode = mode;
  info.max_positions = backend.max_positions();
  info.vocab_size = backend.config().vocab_size;
  info.has_retrieval = has_retrieval;
  try {
    backend.truncate(0);  // the cache is empty: a no-op where the backend can return to a position
  } catch (const Error& e) {
    info.contexts_unsupported = e.what();
  }
  return info;
}

void check_request(const GenerationRequest& r, const EngineInfo& info) {
  const auto n = static_cast<int64_t>(r.prompt.size());
  RA_REQUIRE(n > 0, "the prompt is empty");
  RA_REQUIRE(n <= info.max_positions, "the prompt has {} tokens but the model allows at most {} positions", n,
             info.max_positions);
  RA_REQUIRE(r.max_tokens >= 0, "max_tokens must be >= 0, got {}", r.max_tokens);
  RA_REQUIRE(r.reusable_prefix >= 0 && r.reusable_prefix <= n, "reusable_prefix {} is outside [0, {}]",
             r.reusable_prefix, n);
  for (const int32_t t : r.prompt) {
    RA_REQUIRE(t >= 0 && t < info.vocab_size, "token id {} is outside the vocabulary [0, {})", t, info.vocab_size);
  }
  Sampler check_knobs(r.sampling);  // throws for a bad temperature or top_p
}

EngineHealth EngineFailureState::health() const {
  if (!failed()) return {};
  std::lock_guard lock(mutex_);
  return {false, cause_};
}

bool EngineFailureState::set(const std::string& cause) {
  {
    std::lock_guard lock(mutex_);
    if (failed_.load(std::memory_order_relaxed)) return false;
    cause_ = cause;
  }
  failed_.store(true, std::memory_order_release);
  return true;
}

void decode_tokens(Backend& backend, const GenerationRequest& r, std::span<const float> logits, TokenSink& sink,
                   std::vector<int32_t>& resident, StepProbe* probe, GenerationStats& stats) {
  auto cancelled = [&] { return r.cancel != nullptr && r.cancel->load(std::memory_order_relaxed); };
  auto is_stop = [&](int32_t t) { return std::find(r.stop_tokens.begin(), r.stop_tokens.end(), t) != r.stop_tokens.end(); };
  stats.finish = FinishReason::kCancelled;
  Sampler sampler(r.sampling);
  int32_t token = sampler.next_at(logits, 0);
  StepStats step;
  step.seconds = stats.prefill_seconds;
  if (probe != nullptr) probe->measure(step);
  const auto decode_start = Clock::now();
  for (int64_t i = 0;; ++i) {
    if (is_stop(token)) {
      stats.finish = FinishReason::kStop;
      break;
    }
    if (cancelled()) break;
    ++stats.generated_tokens;
    if (!sink.on_token(token, step)) {
      stats.finish = FinishReason::kStop;
      break;
    }
    if (i + 1 == r.max_tokens || backend.position() >= backend.max_positions()) {
      stats.finish = FinishReason::kLength;
      break;
    }
    if (cancelled()) break;
    const auto step_start = Clock::now();
    const int32_t fed = token;
    token = backend.decode_sample(fed, r.sampling, static_cast<uint64_t>(i + 1), {});
    resident.push_back(fed);
    step.seconds = seconds_since(step_start);
    if (probe != nullptr) probe->measure(step);
  }
  stats.decode_seconds = seconds_since(decode_start);
}

}  // namespace ra::serve
