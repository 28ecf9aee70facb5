#pragma once
// Rotary position embedding tables, computed the way the reference implementations do (transformers'
// LlamaRotaryEmbedding, llama2.c): inverse frequencies and angles in float32, so long positions round
// exactly as they did in training.

#include <cstdint>
#include <vector>

#include "gpu_worker/model/model_config.h"

namespace ra {

// inv_freq[j] for j < head_dim/2, including Llama-3.1 "llama3" frequency scaling when configured.
std::vector<float> rope_inverse_frequencies(const ModelConfig& config);

// cos/sin tables: [max_positions][head_dim/2] float32 each.
struct RopeTable {
  int64_t half_dim = 0;
  std::vector<float> cos;
  std::vector<float> sin;
};
RopeTable make_rope_table(const ModelConfig& config, int64_t max_positions);

// Rotates one head vector x: [head_dim] in place at `position` (rotate-half convention:
// pairs are (j, j + head_dim/2)).
inline void apply_rope(float* x, const RopeTable& table, int64_t position) {
  const int64_t h = table.half_dim;
  const float* c = table.cos.data() + position * h;
  const float* s = table.sin.data() + position * h;
  for (int64_t j = 0; j < h; ++j) {
    const float x1 = x[j];
    const float x2 = x[j + h];
    x[j] = x1 * c[j] - x2 * s[j];
    x[j + h] = x2 * c[j] + x1 * s[j];
  }
}

}  // namespace ra
