#pragma once
// The compute backend interface of the decoder. The CPU reference backend implements it now; the CUDA
// backend implements the same contract. A backend owns its KV cache; the decode loop only feeds tokens
// and reads logits.

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "gpu_worker/model/model.h"

namespace ra {

struct BackendOptions {
  int64_t max_positions = 0;   // KV cache capacity in tokens; 0 = the model's max_position_embeddings
  int64_t prefill_chunk = 256; // tokens per prefill step: bounds activation and score memory
  int threads = 0;             // 0 = all cores
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;

  // Runs `tokens` at positions [position(), position() + tokens.size()), appends their K/V to the
  // cache and writes the logits of the last token to `logits`: [vocab_size] float32.
  // Throws ra::Error if the tokens do not fit in max_positions() or an id is outside the vocabulary.
  virtual void forward(std::span<const int32_t> tokens, std::span<float> logits) = 0;

  // Number of tokens in the KV cache.
  virtual int64_t position() const = 0;
  // KV cache capacity in tokens.
  virtual int64_t max_positions() const = 0;
  // Empties the KV cache.
  virtual void reset() = 0;
};

// The float32 reference backend: threaded with OpenMP and OpenBLAS. `model` must outlive it.
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace ra
