// blas_top_k_batch (the graph build's training lists) against exact_top_k_batch (the ground truth):
// the same keys up to rounding near ties, and results that do not depend on the thread count.

#include "common/error.h"
#include "cpu_retriever/blas_top_k.h"
#include "cpu_retriever/flat_index.h"
#include "tests/support/random_matrix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace ra::retriever {
namespace {

using test::random_keys_and_queries;

// One function's [nq][k] answer.
struct Lists {
  std::vector<int64_t> ids;
  std::vector<float> scores;
};

Lists blas_lists(const std::vector<float>& queries, const std::vector<float>& keys, int64_t dim, int k, int threads) {
  const int64_t nq = static_cast<int64_t>(queries.size()) / dim, n = static_cast<int64_t>(keys.size()) / dim;
  Lists out{std::vector<int64_t>(nq * k), std::vector<float>(nq * k)};
  blas_top_k_batch(queries.data(), nq, keys.data(), n, dim, k, out.ids.data(), out.scores.data(), threads);
  return out;
}

Lists exact_lists(const std::vector<float>& queries, const std::vector<float>& keys, int64_t dim, int k) {
  const int64_t nq = static_cast<int64_t>(queries.size()) / dim, n = static_cast<int64_t>(keys.size()) / dim;
  Lists out{std::vector<int64_t>(nq * k), std::vector<float>(nq * k)};
  exact_top_k_batch(queries.data(), nq, keys.data(), n, dim, k, out.ids.data(), out.scores.data(), 2);
  return out;
}

// Key blocks of 2048 and query blocks of 256 with remainders on both sides.
TEST(BlasTopK, MatchesTheExactScanUpToRoundingAtTies) {
  const int64_t n = 5000, dim = 40, nq = 300;
  const int k = 50;
  const auto [keys, queries] = random_keys_and_queries(n, nq, dim, 1);
  const auto [ids, scores] = blas_lists(queries, keys, dim, k, 2);
  const auto [ref_ids, ref_scores] = exact_lists(queries, keys, dim, k);
  int64_t swapped = 0;
  for (int64_t i = 0; i < nq * k; ++i) {
    EXPECT_NEAR(scores[i], ref_scores[i], 1e-4f * (1.f + std::fabs(ref_scores[i]))) << "slot " << i;
    if (ids[i] != ref_ids[i]) {
      ++swapped;  // only where two keys score alike to rounding
      const float* q = queries.data() + (i / k) * dim;
      const float* key = keys.data() + ids[i] * dim;
      double dot = 0;
      for (int64_t j = 0; j < dim; ++j) dot += double(q[j]) * key[j];
      const float other = static_cast<float>(dot);
      EXPECT_NEAR(other, ref_scores[i], 1e-4f * (1.f + std::fabs(ref_scores[i]))) << "slot " << i;
    }
  }
  EXPECT_LE(swapped, nq * k / 100);
}

// Small integer components make every score exact, whatever the summation order, and full of ties:
// the order must then be exactly exact_top_k_batch's (higher score, then lower id), although the scan
// starts in the middle of the keys for most query blocks.
TEST(BlasTopK, ExactTiesBreakByLowerIdAsTheExactScanDoes) {
  const int64_t n = 5000, dim = 8, nq = 600;
  const int k = 30;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> small(-2, 2);
  std::vector<float> keys(n * dim), queries(nq * dim);
  for (auto& x : keys) x = static_cast<float>(small(rng));
  for (auto& x : queries) x = static_cast<float>(small(rng));
  const Lists got = blas_lists(queries, keys, dim, k, 2), ref = exact_lists(queries, keys, dim, k);
  EXPECT_EQ(got.ids, ref.ids);
  EXPECT_EQ(got.scores, ref.scores);
}

TEST(BlasTopK, SameResultForAnyThreadCountAndPadsPastN) {
  const int64_t n = 3000, dim = 32, nq = 600;  // three query blocks, so 3 threads split them
  const int k = 20;
  const auto [keys, queries] = random_keys_and_queries(n, nq, dim, 3);
  const Lists one = blas_lists(queries, keys, dim, k, 1), three = blas_lists(queries, keys, dim, k, 3);
  EXPECT_EQ(one.ids, three.ids);
  EXPECT_EQ(one.scores, three.scores);

  std::vector<int64_t> few(2 * 5);
  std::vector<float> few_scores(2 * 5);
  blas_top_k_batch(queries.data(), 2, keys.data(), 3, dim, 5, few.data(), few_scores.data(), 2);
  for (int64_t i = 0; i < 2; ++i) {
    for (int r = 0; r < 3; ++r) EXPECT_GE(few[i * 5 + r], 0);
    for (int r = 3; r < 5; ++r) {
      EXPECT_EQ(few[i * 5 + r], -1);
      EXPECT_TRUE(std::isinf(few_scores[i * 5 + r]));
    }
  }
  EXPECT_THROW(blas_top_k_batch(queries.data(), 2, keys.data(), 3, 0, 5, few.data(), few_scores.data(), 1), Error);
}

}  // namespace
}  // namespace ra::retriever
