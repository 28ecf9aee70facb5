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

// An index test's data: keys [n][dim] from `seed`, queries [nq][dim] from seed + 1.
struct KeysAndQueries {
  std::vector<float> keys;
  std::vector<float> queries;
};

inline KeysAndQueries random_keys_and_queries(int64_t n, int64_t nq, int64_t dim, uint32_t seed) {
  return {random_matrix(n, dim, seed), random_matrix(nq, dim, seed + 1)};
}

}  // namespace ra::test
