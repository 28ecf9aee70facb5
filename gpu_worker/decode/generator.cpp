#include "gpu_worker/decode/generator.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "common/error.h"
#include "gpu_worker/decode/sampler.h"

namespace ra {

GenerateStats generate(Backend& backend, const Tokenizer& tokenizer, std::span<const int32_t> prompt,
                       const GenerateOptions& options, const std::function<void(std::string_view)>& on_text) {
  using Clock = std::chrono::steady_clock;
  const ModelConfig& c = backend.config();
  RA_REQUIRE(!prompt.empty(), "the prompt is empty and the model has no BOS token to start from");
  const auto limit = backend.max_positions();
  RA_REQUIRE(static_cast<int64_t>(prompt.size()) <= limit,
             "the prompt has {} tokens but the model allows at most {} positions (max_position_embeddings)",
             prompt.size(), limit);

  GenerateStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  const SamplingParams params{options.temperature, options.top_p, options.seed};
  Sampler sampler(params);  // validates the knobs before any work
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));

  backend.reset();
  auto start = Clock::now();
  backend.forward(prompt, logits);
  if (options.after_prefill) {
    const auto t0 = Clock::now();
    options.after_prefill();
    stats.after_prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  stats.prefill_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  // Token i is the i-th draw (sample_uniform(seed, i)): the first from the prefill's logits on the host,
  // the rest chosen by the backend itself (on the GPU for the CUDA backend, so only the token crosses).
  const std::unique_ptr<StreamDecoder> text = tokenizer.stream_decoder(prompt);
  const std::vector<int32_t> eos_ids = tokenizer.specials().eos_ids;  // e.g. Llama-3.1's <|eot_id|> too
  auto ends = [&](int32_t t) {
    return t == c.eos_token_id || t == c.bos_token_id || std::find(eos_ids.begin(), eos_ids.end(), t) != eos_ids.end();
  };
  stats.step_seconds.reserve(static_cast<size_t>(std::max<int64_t>(0, options.max_new_tokens)));
  start = Clock::now();
  if (options.on_logits) options.on_logits(logits);
  int32_t token = sampler.next_at(logits, 0);
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    if (!options.ignore_eos && ends(token)) {
      stats.stopped_at_eos = true;
      break;
    }
    ++stats.generated_tokens;
    on_text(text->put(token));  // one call per generated token (may be "" while a character is incomplete)
    if (i + 1 == options.max_new_tokens) break;
    if (backend.position() >= limit) {
      stats.hit_context_limit = true;
      break;
    }
    const std::span<float> wanted = options.on_logits ? std::span<float>(logits) : std::span<float>();
    const auto t0 = Clock::now();
    token = backend.decode_sample(token, params, static_cast<uint64_t>(i + 1), wanted);
    stats.step_seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (options.on_logits) options.on_logits(logits);
    if (options.progress_every > 0 && options.on_progress &&
        static_cast<int64_t>(stats.step_seconds.size()) % options.progress_every == 0) {
      options.on_progress(stats);
    }
  }
  if (const std::string rest = text->finish(); !rest.empty()) on_text(rest);
  stats.decode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace ra
