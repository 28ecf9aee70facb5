#pragma once
// Next-token choice from logits, the same function as the GPU kernel (gpu_worker/backend/cuda/sampling.h),
// so a (seed, step, logits) triple picks the same token on every backend and platform:
//
//   temperature == 0: argmax, the lowest index on ties (NaN logits are never chosen).
//   otherwise, with m = max logit and the k-th call of this sampler drawing from step k:
//     w_i = float(exp(double((l_i − m) / T)))    ((l_i − m) / T in float32; exp in double, so that the
//                                                   CPU and GPU libraries round to the same float)
//     q_i = floor(w_i · 2^40), an integer          (the weight in fixed point: every sum below is exact,
//                                                   so the summation order cannot change the token)
//     top_p < 1: keep the tokens with l_i >= λ, where λ is the largest logit whose kept mass
//                Σ_{l_j >= λ} q_j reaches need = ceil(double(S) · top_p), S = Σ q_j (ties at λ all
//                kept); top_p == 1 keeps every token.
//     K = kept mass; z = 2^24 · sample_uniform(seed, step), an integer; r = floor(K · z / 2^24) < K;
//     the token is the first kept index, in ascending order, whose running kept mass exceeds r.
//   NaN logits have weight 0. When no logit is above −inf the greedy answer is returned.

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/sample_uniform.h"

namespace ra {

class Sampler {
 public:
  // Throws ra::Error when temperature < 0 or top_p is outside (0, 1].
  explicit Sampler(SamplingParams params);

  // logits: [vocab] float32, vocab < 2^23. The k-th call (k = 0, 1, ...) uses sample_uniform(seed, k);
  // greedy calls advance the counter too. Allocates only on the first call (or when vocab grows).
  int32_t next(std::span<const float> logits);

  // The token drawn as the `step`-th draw (sample_uniform(seed, step)); leaves the call counter alone.
  // Backend::decode_sample uses it so that any backend can sample any step of a run.
  int32_t next_at(std::span<const float> logits, uint64_t step);

 private:
  // λ and the kept mass for top_p < 1 (see above); total = S.
  std::pair<float, uint64_t> top_p_threshold(std::span<const float> logits, uint64_t total);

  SamplingParams params_;
  uint64_t step_ = 0;
  std::vector<uint64_t> weights_;                    // [vocab] q_i of the current call
  std::vector<std::pair<float, uint64_t>> sorted_;  // (logit, q) of the tokens with q > 0, for top-p
};

// Index of the largest logit; ties go to the lowest index; NaN is skipped (0 when every logit is NaN).
int32_t argmax(std::span<const float> logits);

}  // namespace ra
