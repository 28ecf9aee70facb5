// FAISS baselines (IVF-Flat, HNSW-Flat) against exact flat search.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/faiss_indexes.h"
#include "cpu_retriever/flat_index.h"
#include "tests/support/index_search.h"
#include "tests/support/random_matrix.h"

namespace ra::retriever {
namespace {

using test::random_keys_and_queries;
using test::random_matrix;

using Result = test::SearchResult;
using test::search;

void expect_same_as_flat(const KeyIndex& index, const FlatIndex& flat, const std::vector<float>& queries,
                         int64_t nq, int64_t dim, const SearchParams& p) {
  for (int64_t i = 0; i < nq; ++i) {
    const float* q = queries.data() + i * dim;
    Result want = search(flat, q, p);
    Result got = search(index, q, p);
    ASSERT_EQ(got.count, want.count) << index.name() << " query " << i;
    EXPECT_EQ(got.ids, want.ids) << index.name() << " query " << i;
    for (int r = 0; r < got.count; ++r) EXPECT_NEAR(got.scores[r], want.scores[r], 1e-4);
  }
}

TEST(FaissIndexes, IvfExhaustiveEqualsFlat) {
  const int64_t n = 2000, dim = 32, nq = 20;
  const int nlist = 16;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 1);
  FlatIndex flat(keys.data(), n, dim);
  auto ivf = make_ivf_flat_index(keys.data(), n, dim, nlist, 42);
  EXPECT_EQ(ivf->size(), n);
  EXPECT_EQ(ivf->dim(), dim);
  EXPECT_GT(ivf->memory_bytes(), static_cast<size_t>(n * dim * 4));
  SearchParams p;
  p.k = 50;
  p.nprobe = nlist;
  expect_same_as_flat(*ivf, flat, queries, nq, dim, p);
  // Work: every list scanned plus one quantizer distance per centroid.
  Result r = search(*ivf, queries.data(), p);
  EXPECT_EQ(r.stats.distance_computations, n + nlist);
  EXPECT_EQ(r.stats.hops, 0);
}

TEST(FaissIndexes, IvfCountsProbedListsOnly) {
  const int64_t n = 2000, dim = 32;
  const int nlist = 16;
  auto [keys, q] = random_keys_and_queries(n, 1, dim, 3);
  auto ivf = make_ivf_flat_index(keys.data(), n, dim, nlist, 42);
  SearchParams p;
  p.k = 10;
  int64_t prev = 0;
  for (int nprobe : {1, 2, 4, 8, 16}) {
    p.nprobe = nprobe;
    Result r = search(*ivf, q.data(), p);
    EXPECT_GT(r.stats.distance_computations, nlist);
    EXPECT_LE(r.stats.distance_computations, n + nlist);
    EXPECT_GE(r.stats.distance_computations, prev);  // more probes, at least as much work
    prev = r.stats.distance_computations;
  }
  EXPECT_EQ(prev, n + nlist);
}

TEST(FaissIndexes, IvfSameSeedSameResults) {
  const int64_t n = 1500, dim = 16;
  auto [keys, queries] = random_keys_and_queries(n, 10, dim, 5);
  auto a = make_ivf_flat_index(keys.data(), n, dim, 12, 7);
  auto b = make_ivf_flat_index(keys.data(), n, dim, 12, 7);
  SearchParams p;
  p.k = 20;
  p.nprobe = 2;
  for (int64_t i = 0; i < 10; ++i) {
    Result ra_ = search(*a, queries.data() + i * dim, p);
    Result rb = search(*b, queries.data() + i * dim, p);
    EXPECT_EQ(ra_.ids, rb.ids);
    EXPECT_EQ(ra_.stats.distance_computations, rb.stats.distance_computations);
  }
}

TEST(FaissIndexes, HnswExhaustiveEqualsFlat) {
  const int64_t n = 500, dim = 32, nq = 20;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 7);
  FlatIndex flat(keys.data(), n, dim);
  auto hnsw = make_hnsw_flat_index(keys.data(), n, dim, 16, 100);
  EXPECT_EQ(hnsw->size(), n);
  EXPECT_GT(hnsw->memory_bytes(), static_cast<size_t>(n * dim * 4));
  SearchParams p;
  p.k = 50;
  p.ef = static_cast<int>(n);
  expect_same_as_flat(*hnsw, flat, queries, nq, dim, p);
  // With ef >= n the beam keeps every key it meets, so it reaches the whole graph: at least n
  // evaluations (upper layers add a few more), and not wildly more.
  Result r = search(*hnsw, queries.data(), p);
  EXPECT_GE(r.stats.distance_computations, n);
  EXPECT_LE(r.stats.distance_computations, 4 * n);
}

TEST(FaissIndexes, HnswSmallEfScansLess) {
  const int64_t n = 5000, dim = 16;
  auto [keys, q] = random_keys_and_queries(n, 1, dim, 9);
  auto hnsw = make_hnsw_flat_index(keys.data(), n, dim, 16, 64);
  SearchParams p;
  p.k = 10;
  p.ef = 16;
  Result r = search(*hnsw, q.data(), p);
  EXPECT_EQ(r.count, 10);
  EXPECT_GT(r.stats.distance_computations, 0);
  EXPECT_LT(r.stats.distance_computations, n / 2);
}

TEST(FaissIndexes, KLargerThanNReturnsN) {
  const int64_t n = 40, dim = 8;
  auto [keys, q] = random_keys_and_queries(n, 1, dim, 11);
  FlatIndex flat(keys.data(), n, dim);
  auto ivf = make_ivf_flat_index(keys.data(), n, dim, 4, 1);
  auto hnsw = make_hnsw_flat_index(keys.data(), n, dim, 8, 40);
  SearchParams p;
  p.k = 100;
  p.nprobe = 4;
  p.ef = 100;
  expect_same_as_flat(*ivf, flat, q, 1, dim, p);
  expect_same_as_flat(*hnsw, flat, q, 1, dim, p);
  EXPECT_EQ(search(*ivf, q.data(), p).count, n);
  EXPECT_EQ(search(*hnsw, q.data(), p).count, n);
}

TEST(FaissIndexes, ConcurrentSearchesWithDifferentKnobsMatchSequential) {
  const int64_t n = 3000, dim = 24, nq = 24;
  auto [keys, queries] = random_keys_and_queries(n, nq, dim, 13);
  auto ivf = make_ivf_flat_index(keys.data(), n, dim, 32, 3);
  auto hnsw = make_hnsw_flat_index(keys.data(), n, dim, 12, 64);
  // Each thread gets its own knobs; sequential answers first, then all threads at once.
  const int nthreads = 4;
  const SearchParams knobs[nthreads] = {{10, 10, 1}, {20, 40, 4}, {50, 100, 16}, {100, 400, 32}};
  const KeyIndex* indexes[2] = {ivf.get(), hnsw.get()};
  const float* query_rows = queries.data();  // clang 14 cannot capture a structured binding in a lambda
  auto sweep = [&](int t, std::vector<Result>& out) {
    for (const KeyIndex* idx : indexes) {
      for (int64_t i = 0; i < nq; ++i) out.push_back(search(*idx, query_rows + i * dim, knobs[t]));
    }
  };
  std::vector<std::vector<Result>> expected(nthreads), got(nthreads);
  for (int t = 0; t < nthreads; ++t) sweep(t, expected[t]);
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) threads.emplace_back([&, t] { sweep(t, got[t]); });
  for (auto& th : threads) th.join();
  for (int t = 0; t < nthreads; ++t) {
    ASSERT_EQ(got[t].size(), expected[t].size());
    for (size_t j = 0; j < got[t].size(); ++j) {
      EXPECT_EQ(got[t][j].ids, expected[t][j].ids) << "thread " << t << " search " << j;
      EXPECT_EQ(got[t][j].scores, expected[t][j].scores);
      EXPECT_EQ(got[t][j].stats.distance_computations, expected[t][j].stats.distance_computations)
          << "thread " << t << " search " << j;
    }
  }
}

TEST(FaissIndexes, BadArgumentsThrow) {
  auto keys = random_matrix(10, 4, 15);
  EXPECT_THROW(make_ivf_flat_index(keys.data(), 10, 4, 0, 1), ra::Error);
  EXPECT_THROW(make_ivf_flat_index(keys.data(), 10, 4, 11, 1), ra::Error);
  EXPECT_THROW(make_ivf_flat_index(keys.data(), 0, 4, 1, 1), ra::Error);
  EXPECT_THROW(make_hnsw_flat_index(keys.data(), 10, 4, 0, 10), ra::Error);
  EXPECT_THROW(make_hnsw_flat_index(keys.data(), 10, 0, 8, 10), ra::Error);
}

}  // namespace
}  // namespace ra::retriever
