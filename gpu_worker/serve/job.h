#pragma once
// One request in flight, between its HTTP thread, which waits for output, and the decode thread, which
// produces it. The decode thread appends text and ends the job once (finish or fail); the HTTP thread
// takes the text as it comes and may cancel at any time (the engine stops before its next token).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/sample_uniform.h"
#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/engine.h"

namespace ra::serve {

using Clock = std::chrono::steady_clock;

// What the route labels a request with (metrics).
enum class Endpoint { kCompletions, kChat, kContexts };
inline constexpr int kEndpoints = 3;

// What a request asks for; fixed once submitted.
struct JobSpec {
  Endpoint endpoint = Endpoint::kCompletions;
  std::vector<int32_t> prompt;          // token ids, BOS included
  int64_t reusable_prefix = 0;          // prompt[0, n) is a prebuilt context
  SamplingParams sampling;
  int64_t max_tokens = 0;               // 0 = prefill only
  std::vector<int32_t> stop_tokens;
  std::vector<std::string> stop_strings;
};

// When the job ended, how: the engine's stats, the error, and the times the decode thread saw.
struct JobResult {
  GenerationStats stats;
  std::optional<ApiError> error;  // set when it failed
  double queue_seconds = 0.0;       // admitted -> started
  double first_token_seconds = 0.0; // admitted -> first token (0: none)
};

class Job {
 public:
  explicit Job(JobSpec spec);

  const JobSpec& spec() const { return spec_; }
  Clock::time_point admitted() const { return admitted_; }

  // Any thread: the engine stops before its next token, or the scheduler drops the job unstarted.
  void cancel() { cancel_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancel_.load(std::memory_order_relaxed); }
  const std::atomic<bool>& cancel_flag() const { return cancel_; }

  // Decode thread.
  void started();
  double first_token();  // records and returns admitted -> now, seconds
  void append(std::string_view text);
  void finish(const GenerationStats& stats);  // ends the job; later calls are ignored
  void fail(const ApiError& error);           // ends the job; later calls are ignored

  // HTTP thread: waits until there is new text or the job has ended, or until `until`; moves the new
  // text to `out` (replacing what it held). Returns true once the job has ended and all its text is taken.
  bool wait(std::string& out, Clock::time_point until);
  // After wait() returned true.
  const JobResult& result() const { return result_; }

 private:
  void end(const GenerationStats* stats, const ApiError* error);

  const JobSpec spec_;
  const Clock::time_point admitted_;
  Clock::time_point started_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string pending_;  // text not yet taken
  bool ended_ = false;
  JobResult result_;
};

}  // namespace ra::serve
