#include "gpu_worker/decode/sampler.h"

#include "common/error.h"
#include "common/partial_state.h"

namespace ra {

Sampler::Sampler(float temperature, uint64_t seed)
    : temperature_(temperature), state_(seed == 0 ? 0x9E3779B97F4A7C15ull : seed) {
  RA_REQUIRE(temperature >= 0.0f, "--temperature must be >= 0, got {}", temperature);
}

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

float Sampler::uniform() {
  // xorshift64*
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return static_cast<float>((state_ * 0x2545F4914F6CDD1Dull) >> 40) * 0x1p-24f;
}

int32_t Sampler::next(std::span<float> logits) {
  const int32_t best = argmax(logits);
  if (temperature_ == 0.0f) return best;
  // Shift by the max first: (l − max) / T is <= 0 and cannot overflow for tiny T.
  const float max_logit = logits[best];
  for (float& l : logits) l = (l - max_logit) / temperature_;
  scores_to_weights(logits);  // softmax, the same math as attention
  const float r = uniform();
  float cdf = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) {
    cdf += logits[i];
    if (r < cdf) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(logits.size() - 1);  // rounding left r above the last cdf
}

}  // namespace ra
