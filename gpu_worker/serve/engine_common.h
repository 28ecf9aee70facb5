#pragma once
// What both engines (InprocEngine, PipelineEngine) share around their own prefill: the request checks,
// the sticky failure that health() reports, and the decode loop from the prompt's last logits to the
// end of the request.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/serve/engine.h"

namespace ra::serve {

// The EngineInfo of an engine over `backend` in attention mode `mode` (contexts_unsupported: why the
// backend cannot return to a position, from Backend::truncate on its empty cache, or empty).
EngineInfo engine_info(Backend& backend, const std::string& mode, bool has_retrieval);

// Throws ra::Error for a request the engine refuses: an empty or too long prompt, a token outside the
// vocabulary, max_tokens < 0, reusable_prefix outside the prompt, a bad temperature or top_p.
void check_request(const GenerationRequest& request, const EngineInfo& info);

// An engine's failure: set once from the generate() thread (the first cause wins), read from any thread.
class EngineFailureState {
 public:
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  EngineHealth health() const;
  // Records `cause` unless a failure was recorded already; returns whether this call recorded it.
  bool set(const std::string& cause);

 private:
  std::atomic<bool> failed_{false};
  mutable std::mutex mutex_;
  std::string cause_;
};

// Measurements of a step that only some engines have (the retrievers' keys scanned and round trips).
class StepProbe {
 public:
  virtual ~StepProbe() = default;
  // Called after the prefill (before the first token) and after every decode step; fills what it knows.
  virtual void measure(StepStats& step) = 0;
};

// The generation after the prefill: the first token is draw 0 from `logits` ([vocab] float32, the last
// prompt token's), each later one the backend's decode_sample. Ends at a stop token (not passed on), when
// the sink asks, after max_tokens, when the cache is full, or at a cancel (checked before every token
// and every step). Every token fed to the backend is appended to `resident` (the tokens its cache holds).
// Sets stats.generated_tokens, stats.finish and stats.decode_seconds; stats.prefill_seconds is the
// first token's step time. `probe` may be null. No allocation per token when `resident` has capacity.
void decode_tokens(Backend& backend, const GenerationRequest& request, std::span<const float> logits,
                   TokenSink& sink, std::vector<int32_t>& resident, StepProbe* probe, GenerationStats& stats);

}  // namespace ra::serve
