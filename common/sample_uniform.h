#pragma once
// The uniform number behind the step-th sampled token of a seeded run: a counter-based draw
// (splitmix64 of seed and step), so the CPU sampler and the GPU sampling kernel, given the same logits,
// pick the same token, and a run can be replayed from any step.

#include <cstdint>

#if defined(__CUDACC__)
#define RA_SAMPLE_HD __host__ __device__ __forceinline__
#else
#define RA_SAMPLE_HD inline
#endif

namespace ra {

// Uniform in [0, 1) with 24 random bits (exact in float32).
RA_SAMPLE_HD float sample_uniform(uint64_t seed, uint64_t step) {
  uint64_t z = seed + (step + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * 0x1p-24f;
}

// Per-request sampling knobs (STYLE §7). temperature 0 = greedy (argmax, lowest index on ties).
// top_p in (0, 1]: sample among the most probable tokens whose mass reaches top_p.
struct SamplingParams {
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

}  // namespace ra
