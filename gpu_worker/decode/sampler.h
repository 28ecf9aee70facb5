#pragma once
// Next-token choice from logits: greedy at temperature 0, otherwise sampling from softmax(logits / T)
// with a seeded xorshift generator, so a (seed, logits) pair gives the same token on every platform.

#include <cstdint>
#include <span>
#include <vector>

namespace ra {

class Sampler {
 public:
  Sampler(float temperature, uint64_t seed);

  // logits: [vocab] float32; modified in place when sampling.
  int32_t next(std::span<float> logits);

 private:
  float uniform();  // in [0, 1)

  float temperature_;
  uint64_t state_;
};

// Index of the largest logit; ties go to the lowest index.
int32_t argmax(std::span<const float> logits);

}  // namespace ra
