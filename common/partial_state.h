#pragma once
// The partial-attention math that every process agrees on (DESIGN §4). This is the one place it lives:
// the reference decoder, the GPU worker's merge and the retrievers all call these functions.
//
// For one query head and a key set A, with scores s_j = (q · k_j) · scale:
//   m_A   = max_j s_j
//   lse_A = m_A + ln Σ_j exp(s_j − m_A)          natural log, float32
//   o_A   = Σ_j exp(s_j − lse_A) v_j              [head_dim] float32
// The empty set has lse = −inf and o = 0. Merging disjoint sets:
//   lse = logaddexp(lse_A, lse_B),  o = exp(lse_A − lse) o_A + exp(lse_B − lse) o_B
// and merging two empty sets gives lse = −inf, o = 0, never NaN.

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

namespace ra {

inline constexpr float kEmptyLse = -std::numeric_limits<float>::infinity();

// Replaces scores[j] by exp(s_j − lse) in place and returns lse. An empty span returns −inf.
// Scores of −inf (masked keys) get weight 0; all −inf also returns −inf with all-zero weights.
float scores_to_weights(std::span<float> scores);

// o[d] = Σ_j w[j] · v_j[d], for values v_j = values + j * value_stride, d < head_dim.
void weighted_sum(std::span<const float> weights, const float* values, size_t value_stride,
                  size_t head_dim, float* o);

// Exact partial attention of one query over n contiguous fp32 keys/values.
//   q: [head_dim] float32; keys/values: n rows of head_dim floats, row stride `stride` floats.
//   scratch: at least n floats (holds the weights; no allocation here).
//   o: [head_dim] float32 output. Returns lse (−inf when n == 0, and then o = 0).
float attend(const float* q, const float* keys, const float* values, size_t n, size_t head_dim,
             size_t stride, float scale, std::span<float> scratch, float* o);

// Merges the partial state (lse_b, o_b) into (lse_a, o_a) in place; both [head_dim] float32.
void merge_into(float& lse_a, float* o_a, float lse_b, const float* o_b, size_t head_dim);

// logaddexp that is exact for infinities: logaddexp(−inf, −inf) = −inf.
inline float logaddexp(float a, float b) {
  if (a == kEmptyLse) return b;
  if (b == kEmptyLse) return a;
  const float m = a > b ? a : b;
  return m + std::log1p(std::exp(-std::fabs(a - b)));
}

}  // namespace ra
