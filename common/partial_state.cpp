#include "common/partial_state.h"

#include <algorithm>

namespace ra {

float scores_to_weights(std::span<float> scores) {
  float m = kEmptyLse;
  for (float s : scores) m = std::max(m, s);
  if (m == kEmptyLse) {  // empty, or every key masked
    std::fill(scores.begin(), scores.end(), 0.0f);
    return kEmptyLse;
  }
  float sum = 0.0f;
  for (float& s : scores) {
    s = std::exp(s - m);
    sum += s;
  }
  const float lse = m + std::log(sum);
  // exp(s − lse) = exp(s − m) / sum; the division keeps the weights summing to exactly ~1.
  const float inv = 1.0f / sum;
  for (float& s : scores) s *= inv;
  return lse;
}

void weighted_sum(std::span<const float> weights, const float* values, size_t value_stride,
                  size_t head_dim, float* o) {
  std::fill(o, o + head_dim, 0.0f);
  for (size_t j = 0; j < weights.size(); ++j) {
    const float w = weights[j];
    if (w == 0.0f) continue;
    const float* v = values + j * value_stride;
    for (size_t d = 0; d < head_dim; ++d) o[d] += w * v[d];
  }
}

float attend(const float* q, const float* keys, const float* values, size_t n, size_t head_dim,
             size_t stride, float scale, std::span<float> scratch, float* o) {
  std::span<float> scores = scratch.first(n);
  for (size_t j = 0; j < n; ++j) {
    const float* k = keys + j * stride;
    float dot = 0.0f;
    for (size_t d = 0; d < head_dim; ++d) dot += q[d] * k[d];
    scores[j] = dot * scale;
  }
  const float lse = scores_to_weights(scores);
  weighted_sum(scores, values, stride, head_dim, o);
  return lse;
}

void merge_into(float& lse_a, float* o_a, float lse_b, const float* o_b, size_t head_dim) {
  if (lse_b == kEmptyLse) return;  // nothing to add (also covers empty ∪ empty)
  if (lse_a == kEmptyLse) {
    lse_a = lse_b;
    std::copy(o_b, o_b + head_dim, o_a);
    return;
  }
  const float lse = logaddexp(lse_a, lse_b);
  const float wa = std::exp(lse_a - lse);
  const float wb = std::exp(lse_b - lse);
  for (size_t d = 0; d < head_dim; ++d) o_a[d] = wa * o_a[d] + wb * o_b[d];
  lse_a = lse;
}

}  // namespace ra
