#pragma once
// What the server drives: an Engine turns a prompt's token ids, the request's sampling knobs, its stop
// condition and a cancellation flag into a stream of generated tokens with stats. It knows tokens only;
// text, chat templates, stop strings and HTTP stay in the server. Implementations:
//   - InprocEngine (inproc_engine.h): a Backend in this process (modes full and window);
//   - PipelineEngine (pipeline_engine.h): the worker rank of an mpirun job, the retrievers behind it.
//
// Threads: generate() and idle() run on one thread (the server's decode thread), one request at a
// time; info() and health() may be called from any thread.

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "common/error.h"
#include "common/sample_uniform.h"

namespace ra::serve {

enum class FinishReason {
  kStop,       // a stop token, or the sink asked to stop (a stop string matched)
  kLength,     // max_tokens generated, or the KV cache is full
  kCancelled,  // the request's cancel flag was set
};

// The step that produced one token, as the engine measured it.
struct StepStats {
  double seconds = 0.0;       // wall time of the step (the prefill, for the first token)
  int64_t keys_scanned = -1;  // distance computations of the retrievers in this step; -1 without retrievers
  // Retriever round trip of each layer in this step, seconds; empty without retrievers.
  std::span<const double> round_trip_seconds;
};

// Receives one request's generated tokens, on the engine's thread.
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // One generated token (never a stop token). Returns false to end the generation here.
  virtual bool on_token(int32_t token, const StepStats& step) = 0;
};

// One request. Spans must stay valid until generate() returns.
struct GenerationRequest {
  std::span<const int32_t> prompt;         // token ids, BOS included; not empty
  int64_t reusable_prefix = 0;             // prompt[0, n) is a prebuilt context: reuse its KV if still held
  SamplingParams sampling;                 // the first token is draw 0, the k-th draw k (common/sample_uniform.h)
  int64_t max_tokens = 0;                  // tokens to generate at most; 0 = prefill only (builds a context)
  std::span<const int32_t> stop_tokens;    // ids that end the generation (EOS, end of turn); not passed on
  const std::atomic<bool>* cancel = nullptr;  // set from any thread; checked before every token
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t reused_tokens = 0;     // prompt tokens whose KV was already in the cache (not prefilled)
  int64_t generated_tokens = 0;  // tokens passed to the sink
  double prefill_seconds = 0.0;  // the other prompt tokens
  double decode_seconds = 0.0;   // every step after the prefill
  FinishReason finish = FinishReason::kLength;
};

// Fixed for the engine's lifetime.
struct EngineInfo {
  std::string backend;        // "cpu", "cuda"
  std::string mode;           // attention mode: "full", "window", ...
  int64_t max_positions = 0;  // prompt + generated tokens at most
  int64_t vocab_size = 0;
  bool has_retrieval = false;  // StepStats carries keys scanned and round trips
  std::string contexts_unsupported;  // empty when prebuilt contexts are reused; else why they are not
};

struct EngineHealth {
  bool ok = true;
  std::string cause;  // why not, when !ok (e.g. "retriever rank 2 on host x stopped answering")
};

// The engine broke (a retriever died, a device error): the request in flight fails with 503 naming
// what(), and health() reports it from then on.
class EngineFailure : public Error {
 public:
  using Error::Error;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // What it runs. Any thread.
  virtual const EngineInfo& info() const = 0;
  // Whether it can take requests, and why not. Any thread.
  virtual EngineHealth health() const = 0;
  // Runs `request` to its end: prefill (reusing what it may), then up to max_tokens tokens to `sink`.
  // Throws ra::Error, before any work, for a request it refuses; EngineFailure when the engine broke.
  virtual GenerationStats generate(const GenerationRequest& request, TokenSink& sink) = 0;
  // Called on the generate() thread when no request has come for a while (about every 100 ms): an
  // engine with peers checks them here, so that health() turns false without a request. Never throws.
  virtual void idle() noexcept {}
};

}  // namespace ra::serve
