#pragma once
// The decode loop: prefill the prompt, then sample one token at a time until EOS or the budget.

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/tokenizer.h"

namespace ra {

struct GenerateStats;

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;        // nucleus sampling: the most probable tokens whose mass reaches top_p
  uint64_t seed = 0;
  bool ignore_eos = false;  // keep going past EOS/BOS (benchmarks and soak runs want a fixed length)
  // Called once the prompt is prefilled, before the first token is sampled: the worker ships the
  // offloaded KV and waits for the retrievers' indexes here. Its time counts as prefill time.
  std::function<void()> after_prefill;
  // Called with each token's logits: [vocab_size] float32, the prefill's first (tests, tracing).
  std::function<void(std::span<const float>)> on_logits;
  // Called after every progress_every decode steps (0 = never) with the stats so far: a long run
  // reports as it goes, so a run that is stopped early still leaves its figures.
  int64_t progress_every = 0;
  std::function<void(const GenerateStats&)> on_progress;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0.0;  // includes after_prefill
  double after_prefill_seconds = 0.0;  // of which in after_prefill (the retrievers' build tail)
  double decode_seconds = 0.0;   // all decode steps after the first token
  std::vector<double> step_seconds;  // each decode step's wall time (reserved up front: no allocation per step)
  bool hit_context_limit = false;
  bool stopped_at_eos = false;
};

// Runs `prompt` (token ids, BOS included if wanted) through `backend` from an empty cache and streams
// each generated token's text to `on_text` (whole UTF-8 characters: one call per token, possibly empty,
// plus one final call for bytes held back at the end). EOS is the model's eos_token_id and every id the
// tokenizer's files name as one. The first token comes from the prefill logits; stops at
// EOS/BOS, after max_new_tokens, or when the KV cache is full. Throws ra::Error when the prompt is
// longer than the backend's context.
GenerateStats generate(Backend& backend, const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                       const GenerateOptions& options, const std::function<void(std::string_view)>& on_text);

}  // namespace ra
