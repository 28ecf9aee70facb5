#include "gpu_worker/model/rope.h"

#include <cmath>
#include <numbers>

namespace ra {

std::vector<float> rope_inverse_frequencies(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    inv[j] = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * j) / static_cast<float>(c.head_dim));
  }
  if (c.rope_scaling.llama3) {
    // transformers' _compute_llama3_parameters.
    const auto& s = c.rope_scaling;
    const float old_ctx = static_cast<float>(s.original_max_position_embeddings);
    const float low_freq_wavelen = old_ctx / s.low_freq_factor;
    const float high_freq_wavelen = old_ctx / s.high_freq_factor;
    for (float& f : inv) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      if (wavelen > low_freq_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const float smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0f - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

RopeTable make_rope_table(const ModelConfig& c, int64_t max_positions) {
  const std::vector<float> inv = rope_inverse_frequencies(c);
  RopeTable t;
  t.half_dim = c.head_dim / 2;
  t.cos.resize(static_cast<size_t>(max_positions * t.half_dim));
  t.sin.resize(t.cos.size());
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t j = 0; j < t.half_dim; ++j) {
      const float angle = static_cast<float>(p) * inv[j];  // float32 product, as in training
      t.cos[p * t.half_dim + j] = static_cast<float>(std::cos(static_cast<double>(angle)));
      t.sin[p * t.half_dim + j] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return t;
}

}  // namespace ra
