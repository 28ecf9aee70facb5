#pragma once
// Test data: a [rows][dim] float32 matrix of standard normal entries, reproducible from its seed.

#include <cstdint>
#include <random>
#include <vector>

namespace ra::test {

inline std::vector<float> random_matrix(int64_t rows, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> m(static_cast<size_t>(rows * dim));
  for (float& x : m) x = dist(rng);
  return m;
}

}  // namespace ra::test
