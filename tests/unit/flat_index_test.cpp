// FlatIndex / exact_top_k against a naive double-precision brute force.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/flat_index.h"
#include "tests/support/index_search.h"
#include "tests/support/random_matrix.h"

namespace ra::retriever {
namespace {

using test::random_keys_and_queries;
using test::random_matrix;
using test::search;

// Naive reference: double-precision scores, sorted by (score desc, id asc).
std::vector<int64_t> naive_top_k(const float* q, const float* keys, int64_t n, int64_t dim, int k) {
  std::vector<double> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < dim; ++j) acc += double(q[j]) * double(keys[i * dim + j]);
    s[i] = acc;
  }
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
  ids.resize(static_cast<size_t>(std::min<int64_t>(k, n)));
  return ids;
}

TEST(FlatIndex, DotProductMatchesDoubleForOddDims) {
  for (int64_t dim : {1, 3, 7, 8, 9, 16, 33, 64, 127, 128}) {
    auto a = random_matrix(1, dim, 1);
    auto b = random_matrix(1, dim, 2);
    double ref = 0;
    for (int64_t j = 0; j < dim; ++j) ref += double(a[j]) * double(b[j]);
    EXPECT_NEAR(dot_f32(a.data(), b.data(), dim), ref, 1e-4) << "dim " << dim;
  }
}

TEST(FlatIndex, MatchesNaiveBruteForce) {
  const int64_t n = 3000, dim = 64, nq = 40;
  const int k = 100;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 7);
  FlatIndex index(keys.data(), n, dim);
  EXPECT_EQ(index.size(), n);
  EXPECT_EQ(index.dim(), dim);
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  for (int64_t i = 0; i < nq; ++i) {
    const float* q = queries.data() + i * dim;
    SearchStats stats;
    SearchParams p;
    p.k = k;
    ASSERT_EQ(index.search(q, p, ids.data(), scores.data(), &stats), k);
    EXPECT_EQ(stats.distance_computations, n);
    EXPECT_EQ(stats.hops, 0);
    EXPECT_EQ(ids, naive_top_k(q, keys.data(), n, dim, k)) << "query " << i;
    for (int r = 0; r < k; ++r) {
      EXPECT_FLOAT_EQ(scores[r], dot_f32(q, keys.data() + ids[r] * dim, dim));
      if (r > 0) {
        EXPECT_GE(scores[r - 1], scores[r]);
      }
    }
  }
}

TEST(FlatIndex, TiesBrokenByLowerId) {
  // Keys repeat with period 5, so every score appears n/5 times.
  const int64_t n = 50, dim = 8;
  auto base = random_matrix(5, dim, 3);
  std::vector<float> keys(static_cast<size_t>(n * dim));
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(base.data() + (i % 5) * dim, dim, keys.data() + i * dim);
  }
  auto q = random_matrix(1, dim, 4);
  const int k = 17;
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  ASSERT_EQ(exact_top_k(q.data(), keys.data(), n, dim, k, ids.data(), scores.data()), k);
  EXPECT_EQ(ids, naive_top_k(q.data(), keys.data(), n, dim, k));
  for (int r = 1; r < k; ++r) {
    if (scores[r] == scores[r - 1]) {
      EXPECT_LT(ids[r - 1], ids[r]);
    }
  }
}

TEST(FlatIndex, KLargerThanNReturnsN) {
  const int64_t n = 10, dim = 12;
  auto [keys, q] = random_keys_and_queries(n, 1, dim, 5);
  FlatIndex index(keys.data(), n, dim);
  SearchParams p;
  p.k = 25;
  std::vector<int64_t> ids(25, -7);
  std::vector<float> scores(25);
  ASSERT_EQ(index.search(q.data(), p, ids.data(), scores.data(), nullptr), n);
  std::vector<int64_t> got(ids.begin(), ids.begin() + n);
  EXPECT_EQ(got, naive_top_k(q.data(), keys.data(), n, dim, 25));
  p.k = 0;
  EXPECT_EQ(index.search(q.data(), p, ids.data(), scores.data(), nullptr), 0);
}

TEST(FlatIndex, BatchEqualsSingle) {
  const int64_t n = 2000, dim = 32, nq = 64;
  const int k = 30;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 9);
  std::vector<int64_t> bids(static_cast<size_t>(nq * k));
  std::vector<float> bscores(static_cast<size_t>(nq * k));
  exact_top_k_batch(queries.data(), nq, keys.data(), n, dim, k, bids.data(), bscores.data(), 2);
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  for (int64_t i = 0; i < nq; ++i) {
    exact_top_k(queries.data() + i * dim, keys.data(), n, dim, k, ids.data(), scores.data());
    for (int r = 0; r < k; ++r) {
      EXPECT_EQ(bids[i * k + r], ids[r]);
      EXPECT_EQ(bscores[i * k + r], scores[r]);
    }
  }
}

TEST(FlatIndex, BatchPadsWhenKExceedsN) {
  const int64_t n = 3, dim = 4, nq = 2;
  const int k = 5;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 11);
  std::vector<int64_t> ids(nq * k);
  std::vector<float> scores(nq * k);
  exact_top_k_batch(queries.data(), nq, keys.data(), n, dim, k, ids.data(), scores.data(), 0);
  for (int64_t i = 0; i < nq; ++i) {
    for (int r = 3; r < k; ++r) EXPECT_EQ(ids[i * k + r], -1);
  }
}

TEST(FlatIndex, ConcurrentSearchesMatchSequential) {
  const int64_t n = 1500, dim = 48, nq = 32;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 13);
  FlatIndex index(keys.data(), n, dim);
  const int ks[4] = {1, 10, 50, 100};
  std::vector<std::vector<int64_t>> expected(4 * nq);
  for (int t = 0; t < 4; ++t) {
    for (int64_t i = 0; i < nq; ++i) expected[t * nq + i] = search(index, queries.data() + i * dim, {.k = ks[t]}).ids;
  }
  std::vector<std::vector<int64_t>> got(4 * nq);
  std::vector<std::thread> threads;
  const float* query_rows = queries.data();  // clang 14 cannot capture a structured binding in a lambda
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t i = 0; i < nq; ++i) got[t * nq + i] = search(index, query_rows + i * dim, {.k = ks[t]}).ids;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(got, expected);
}

TEST(FlatIndex, BadArgumentsThrow) {
  float x = 0;
  int64_t id;
  EXPECT_THROW(exact_top_k(&x, &x, 1, 1, -1, &id, &x), ra::Error);
  EXPECT_THROW(exact_top_k(&x, &x, 1, 0, 1, &id, &x), ra::Error);
  EXPECT_THROW(FlatIndex(&x, 1, 0), ra::Error);
}

}  // namespace
}  // namespace ra::retriever
