#include "gpu_worker/decode/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "common/error.h"

// The fixed-point weight, the top-p need and the scaled draw below are written out identically in
// gpu_worker/backend/cuda/sampling.cu; change them together (ops_gpu_test compares the two).

namespace ra {
namespace {

constexpr int kWeightBits = 40;                  // q_i = floor(w_i · 2^40) <= 2^40
constexpr size_t kMaxVocab = size_t{1} << 23;    // so that Σ q_i < 2^63
constexpr float kInf = std::numeric_limits<float>::infinity();

// q_i of the header: 0 for NaN, −inf and weights below 2^-40.
uint64_t fixed_weight(float logit, float max_logit, float temperature) {
  const float x = logit == max_logit ? 0.0f : (logit - max_logit) / temperature;  // <= 0, or NaN
  if (!(x > -kInf)) return 0;                                                      // NaN or −inf
  const float w = static_cast<float>(std::exp(static_cast<double>(x)));            // in [0, 1]
  return static_cast<uint64_t>(w * 0x1p40f);
}

// ceil(double(total) · top_p), clamped to [1, total].
uint64_t top_p_need(uint64_t total, float top_p) {
  const double need = std::ceil(static_cast<double>(total) * static_cast<double>(top_p));
  if (!(need >= 1.0)) return 1;
  if (need >= static_cast<double>(total)) return total;
  return static_cast<uint64_t>(need);
}

// floor(kept · z / 2^24) for z < 2^24 without overflow (kept < 2^63): < kept when kept > 0.
uint64_t scaled_draw(uint64_t kept, float u) {
  const uint64_t z = static_cast<uint64_t>(u * 0x1p24f);  // u has 24 random bits: exact
  return (kept >> 24) * z + (((kept & 0xFFFFFFu) * z) >> 24);
}

}  // namespace

Sampler::Sampler(SamplingParams params) : params_(params) {
  RA_REQUIRE(params.temperature >= 0.0f, "the sampling temperature must be >= 0 (0 = greedy), got {}",
             params.temperature);
  RA_REQUIRE(params.top_p > 0.0f && params.top_p <= 1.0f, "top_p must be in (0, 1] (1 = no nucleus cut), got {}",
             params.top_p);
}

int32_t argmax(std::span<const float> logits) {
  int32_t best = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

std::pair<float, uint64_t> Sampler::top_p_threshold(std::span<const float> logits, uint64_t total) {
  sorted_.clear();
  sorted_.reserve(logits.size());  // no reallocation once it has held a full vocabulary
  for (size_t i = 0; i < logits.size(); ++i) {
    if (weights_[i] > 0) sorted_.emplace_back(logits[i], weights_[i]);
  }
  std::sort(sorted_.begin(), sorted_.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  const uint64_t need = top_p_need(total, params_.top_p);
  uint64_t mass = 0;
  for (size_t i = 0; i < sorted_.size();) {
    const float logit = sorted_[i].first;
    for (; i < sorted_.size() && sorted_[i].first == logit; ++i) mass += sorted_[i].second;  // the whole tie
    if (mass >= need) return {logit, mass};
  }
  return {-kInf, total};  // unreachable: the full mass is total >= need
}

int32_t Sampler::next(std::span<const float> logits) { return next_at(logits, step_++); }

int32_t Sampler::next_at(std::span<const float> logits, uint64_t step) {
  RA_REQUIRE(!logits.empty() && logits.size() < kMaxVocab, "sampling needs 1 to {} logits, got {}", kMaxVocab - 1,
             logits.size());
  const int32_t best = argmax(logits);
  const float max_logit = logits[static_cast<size_t>(best)];
  if (params_.temperature == 0.0f || !(max_logit > -kInf)) return best;

  weights_.resize(logits.size());
  uint64_t total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    weights_[i] = fixed_weight(logits[i], max_logit, params_.temperature);
    total += weights_[i];
  }
  float threshold = -kInf;  // every non-NaN logit is kept
  uint64_t kept = total;
  if (params_.top_p < 1.0f) std::tie(threshold, kept) = top_p_threshold(logits, total);

  const uint64_t r = scaled_draw(kept, sample_uniform(params_.seed, step));
  uint64_t running = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!(logits[i] >= threshold)) continue;
    running += weights_[i];
    if (running > r) return static_cast<int32_t>(i);
  }
  return best;  // unreachable: r < kept, and the kept weights sum to kept
}

}  // namespace ra
