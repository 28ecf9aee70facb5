#include "gpu_worker/decode/generator.h"

#include <chrono>
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
  Sampler sampler(options.temperature, options.seed);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));

  backend.reset();
  auto start = Clock::now();
  backend.forward(prompt, logits);
  if (options.after_prefill) options.after_prefill();
  stats.prefill_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  int32_t prev = prompt.back();
  start = Clock::now();
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    if (options.on_logits) options.on_logits(logits);
    const int32_t token = sampler.next(logits);
    if (token == c.eos_token_id || token == c.bos_token_id) {
      stats.stopped_at_eos = true;
      break;
    }
    ++stats.generated_tokens;
    on_text(tokenizer.decode(prev, token));
    prev = token;
    if (i + 1 == options.max_new_tokens) break;
    if (backend.position() >= limit) {
      stats.hit_context_limit = true;
      break;
    }
    const int32_t one[1] = {token};
    backend.forward(one, logits);
  }
  stats.decode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace ra
