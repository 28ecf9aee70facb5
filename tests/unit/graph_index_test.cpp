// The attention-aware graph index against brute force, on synthetic out-of-distribution data: keys
// and queries come from clearly different distributions, as post-RoPE attention queries and keys do.

#include "common/error.h"
#include "cpu_retriever/graph_build.h"
#include "cpu_retriever/graph_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace ra::retriever {
namespace {

// Low intrinsic dimension, like real attention keys: keys: [n][dim] = m + B (sigma ⊙ z) + 0.05 e, with
// B: [dim][16] random and sigma anisotropic; queries: [nq][dim] = -1.5 m + w + 0.6 B z' + 0.05 e'
// (mirrored, shifted and rescaled mean): out of distribution for the keys.
struct OodData {
  int64_t n, dim;
  std::vector<float> keys, train, test;
};

OodData make_ood(int64_t n, int64_t dim, int64_t n_train, int64_t n_test, uint64_t seed) {
  constexpr int64_t r = 16;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> m(dim), w(dim), basis(dim * r), sigma(r);
  for (int64_t j = 0; j < dim; ++j) {
    m[j] = g(rng);
    w[j] = g(rng);
  }
  for (auto& b : basis) b = g(rng) / 4.f;
  for (int64_t l = 0; l < r; ++l) sigma[l] = 0.3f + 1.7f * static_cast<float>(l) / (r - 1);
  auto sample = [&](std::vector<float>& out, int64_t rows, float mean_scale, const std::vector<float>* shift,
                    float spread) {
    out.resize(rows * dim);
    std::vector<float> z(r);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t l = 0; l < r; ++l) z[l] = sigma[l] * g(rng);
      for (int64_t j = 0; j < dim; ++j) {
        float v = mean_scale * m[j] + (shift ? (*shift)[j] : 0.f) + 0.05f * g(rng);
        for (int64_t l = 0; l < r; ++l) v += spread * basis[j * r + l] * z[l];
        out[i * dim + j] = v;
      }
    }
  };
  OodData d{n, dim, {}, {}, {}};
  sample(d.keys, n, 1.f, nullptr, 1.f);
  sample(d.train, n_train, -1.5f, &w, 0.6f);
  sample(d.test, n_test, -1.5f, &w, 0.6f);
  return d;
}

// Exact top-k ids by inner product (plain double accumulation, independent of the index's kernel).
std::vector<int64_t> brute_topk(const std::vector<float>& keys, int64_t dim, const float* q, int k) {
  const int64_t n = static_cast<int64_t>(keys.size()) / dim;
  std::vector<std::pair<double, int64_t>> s(n);
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < dim; ++j) acc += double(q[j]) * keys[i * dim + j];
    s[i] = {-acc, i};
  }
  const int64_t kk = std::min<int64_t>(k, n);
  std::partial_sort(s.begin(), s.begin() + kk, s.end());
  std::vector<int64_t> ids(kk);
  for (int64_t i = 0; i < kk; ++i) ids[i] = s[i].second;
  return ids;
}

double recall(const std::vector<int64_t>& truth, const int64_t* got, int n_got) {
  std::set<int64_t> t(truth.begin(), truth.end());
  int hit = 0;
  for (int i = 0; i < n_got; ++i) hit += t.count(got[i]);
  return truth.empty() ? 1.0 : double(hit) / double(truth.size());
}

struct Measured {
  double recall = 0, scanned = 0;
};

Measured measure(const GraphIndex& index, const OodData& d, int k, int ef) {
  const int64_t nt = static_cast<int64_t>(d.test.size()) / d.dim;
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  Measured m;
  SearchStats stats;
  for (int64_t t = 0; t < nt; ++t) {
    const float* q = d.test.data() + t * d.dim;
    const int got = index.search(q, SearchParams{.k = k, .ef = ef}, ids.data(), scores.data(), &stats);
    m.recall += recall(brute_topk(d.keys, d.dim, q, k), ids.data(), got);
  }
  m.recall /= double(nt);
  m.scanned = double(stats.distance_computations) / double(nt) / double(index.size());
  return m;
}

int64_t reachable_from_entry(const GraphIndex& index) {
  const GraphCsr& g = index.adjacency();
  std::vector<uint8_t> seen(g.nodes(), 0);
  std::vector<uint32_t> stack{index.entry_point()};
  seen[index.entry_point()] = 1;
  int64_t count = 1;
  while (!stack.empty()) {
    const uint32_t u = stack.back();
    stack.pop_back();
    for (uint32_t v : g.out(u))
      if (!seen[v]) {
        seen[v] = 1;
        ++count;
        stack.push_back(v);
      }
  }
  return count;
}

TEST(GraphIndex, RecallFloorOnOutOfDistributionQueries) {
  const OodData d = make_ood(8000, 64, 2000, 100, 1);
  GraphBuildParams p;
  p.M = 32;
  p.Kq = 100;
  p.seed = 7;
  GraphIndex index(d.keys.data(), d.n, d.dim, d.train.data(), 2000, p);
  EXPECT_EQ(index.size(), d.n);
  EXPECT_EQ(reachable_from_entry(index), d.n);
  EXPECT_GT(index.memory_bytes(), 0u);

  const Measured r10 = measure(index, d, 10, 32);
  const Measured r100 = measure(index, d, 100, 128);
  std::printf("recall@10 ef=32: %.4f scanned %.4f | recall@100 ef=128: %.4f scanned %.4f | %zu bytes\n",
              r10.recall, r10.scanned, r100.recall, r100.scanned, index.memory_bytes());
  // Measured (seed 1): recall@10 0.979 at 7.4% scanned, recall@100 0.973 at 16.4% scanned.
  EXPECT_GE(r10.recall, 0.93);
  EXPECT_LE(r10.scanned, 0.12);
  EXPECT_GE(r100.recall, 0.93);
  EXPECT_LE(r100.scanned, 0.25);
}

TEST(GraphIndex, L2OcclusionWithFillAlsoWorks) {
  const OodData d = make_ood(3000, 64, 750, 50, 12);
  GraphBuildParams p;
  p.M = 16;
  p.Kq = 64;
  p.occlusion = Occlusion::kL2;
  p.fill_pruned = true;
  GraphIndex index(d.keys.data(), d.n, d.dim, d.train.data(), 750, p);
  EXPECT_EQ(reachable_from_entry(index), d.n);
  // Only reachability repair may exceed the degree cap (2 M), and it is rare.
  int64_t over_cap = 0;
  for (int64_t i = 0; i < d.n; ++i) over_cap += index.adjacency().out(i).size() > 2u * 16u;
  EXPECT_LE(over_cap, d.n / 100);
  const Measured r10 = measure(index, d, 10, 48);
  std::printf("L2+fill, 3000 keys: recall@10 ef=48: %.4f scanned %.4f\n", r10.recall, r10.scanned);
  EXPECT_GE(r10.recall, 0.90);
}

TEST(GraphIndex, SameSeedSameGraphForAnyThreadCount) {
  const OodData d = make_ood(3000, 64, 1200, 0, 2);
  GraphBuildParams p;
  p.M = 24;
  p.Kq = 64;
  p.seed = 11;
  p.max_train_queries = 800;  // exercises the seeded subsample
  p.threads = 1;
  GraphIndex a(d.keys.data(), d.n, d.dim, d.train.data(), 1200, p);
  p.threads = 2;
  GraphIndex b(d.keys.data(), d.n, d.dim, d.train.data(), 1200, p);
  p.threads = 3;  // more threads than cores still gives the same graph
  GraphIndex c(d.keys.data(), d.n, d.dim, d.train.data(), 1200, p);
  EXPECT_EQ(a.entry_point(), b.entry_point());
  EXPECT_TRUE(a.adjacency() == b.adjacency());
  EXPECT_TRUE(a.adjacency() == c.adjacency());
  p.seed = 12;  // a different subsample gives a different graph
  GraphIndex e(d.keys.data(), d.n, d.dim, d.train.data(), 1200, p);
  EXPECT_FALSE(a.adjacency() == e.adjacency());
  EXPECT_EQ(reachable_from_entry(a), d.n);
}

TEST(GraphIndex, PrecomputedTopKListsGiveTheSameGraph) {
  const OodData d = make_ood(2000, 32, 500, 0, 3);
  GraphBuildParams p;
  p.M = 16;
  p.Kq = 50;
  const std::vector<int64_t> topk = exact_topk_ip(d.keys.data(), d.n, d.dim, d.train.data(), 500, 50, 2);
  GraphIndex a(d.keys.data(), d.n, d.dim, d.train.data(), 500, p);
  GraphIndex b(d.keys.data(), d.n, d.dim, d.train.data(), 500, p, topk.data(), 50);
  EXPECT_TRUE(a.adjacency() == b.adjacency());
  // The computed lists match the brute-force reference.
  for (int q = 0; q < 20; ++q) {
    const auto truth = brute_topk(d.keys, d.dim, d.train.data() + q * d.dim, 50);
    EXPECT_GE(recall(truth, topk.data() + q * 50, 50), 0.98) << q;  // float vs double ties only
  }
}

TEST(GraphIndex, ExhaustiveEfIsExact) {
  const OodData d = make_ood(2000, 32, 500, 20, 4);
  GraphBuildParams p;
  p.M = 16;
  p.Kq = 50;
  GraphIndex index(d.keys.data(), d.n, d.dim, d.train.data(), 500, p);
  const Measured m = measure(index, d, 100, static_cast<int>(d.n));
  EXPECT_EQ(m.recall, 1.0);
  EXPECT_NEAR(m.scanned, 1.0, 1e-9);  // every key reached
}

TEST(GraphIndex, TailMergedWithGraphResults) {
  OodData d = make_ood(3000, 32, 600, 10, 5);
  GraphBuildParams p;
  p.M = 16;
  p.Kq = 50;
  GraphIndex index(d.keys.data(), d.n, d.dim, d.train.data(), 600, p);
  // Appended keys point along the mean test query, with a large norm: they are the best keys.
  std::vector<float> mean(d.dim, 0.f);
  for (size_t i = 0; i < d.test.size(); ++i) mean[i % d.dim] += d.test[i];
  std::mt19937_64 rng(9);
  std::normal_distribution<float> g(0.f, 0.05f);
  std::vector<float> all = d.keys;  // [n + 20][dim]: reference matrix for brute force
  for (int t = 0; t < 20; ++t) {
    std::vector<float> key(d.dim);
    for (int64_t j = 0; j < d.dim; ++j) key[j] = mean[j] * (1.f + g(rng));
    EXPECT_EQ(index.append(key.data()), d.n + t);
    all.insert(all.end(), key.begin(), key.end());
  }
  EXPECT_EQ(index.size(), d.n + 20);
  EXPECT_EQ(index.tail_size(), 20);
  for (int64_t t = 0; t < 10; ++t) {
    const float* q = d.test.data() + t * d.dim;
    std::vector<int64_t> ids(50);
    std::vector<float> scores(50);
    // k <= appended: the answer lies entirely in the tail, in exact order.
    SearchStats stats;
    int got = index.search(q, SearchParams{.k = 10}, ids.data(), scores.data(), &stats);
    ASSERT_EQ(got, 10);
    EXPECT_GT(stats.hops, 0);
    EXPECT_GT(stats.distance_computations, 20);  // graph work plus the 20 tail rows
    EXPECT_LT(stats.distance_computations, d.n);
    const auto truth10 = brute_topk(all, d.dim, q, 10);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(ids[i], truth10[i]) << t << " " << i;
    // k > appended at an exhaustive ef: tail and graph results merge into the exact answer.
    got = index.search(q, SearchParams{.k = 50, .ef = static_cast<int>(d.n)}, ids.data(), scores.data(), nullptr);
    ASSERT_EQ(got, 50);
    const auto truth50 = brute_topk(all, d.dim, q, 50);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(ids[i], truth50[i]) << t << " " << i;
    for (int i = 1; i < 50; ++i) EXPECT_GE(scores[i - 1], scores[i]);
  }
}

TEST(GraphIndex, KLargerThanSizeReturnsEverything) {
  const OodData d = make_ood(50, 16, 20, 1, 6);
  GraphBuildParams p;
  p.M = 8;
  p.Kq = 10;
  GraphIndex index(d.keys.data(), d.n, d.dim, d.train.data(), 20, p);
  std::vector<float> extra(16, 0.5f);
  index.append(extra.data());
  std::vector<int64_t> ids(100);
  std::vector<float> scores(100);
  const int got = index.search(d.test.data(), SearchParams{.k = 100}, ids.data(), scores.data(), nullptr);
  ASSERT_EQ(got, 51);
  std::vector<float> all = d.keys;
  all.insert(all.end(), extra.begin(), extra.end());
  const auto truth = brute_topk(all, d.dim, d.test.data(), 100);
  for (int i = 0; i < got; ++i) EXPECT_EQ(ids[i], truth[i]) << i;
  EXPECT_EQ(index.search(d.test.data(), SearchParams{.k = 0}, ids.data(), scores.data(), nullptr), 0);
}

TEST(GraphIndex, ConcurrentSearchesAgreeWithSerial) {
  const OodData d = make_ood(2000, 32, 500, 40, 8);
  GraphBuildParams p;
  p.M = 16;
  p.Kq = 50;
  GraphIndex index(d.keys.data(), d.n, d.dim, d.train.data(), 500, p);
  std::vector<int64_t> serial(40 * 10), parallel(40 * 10);
  std::vector<float> sc(10);
  for (int t = 0; t < 40; ++t)
    index.search(d.test.data() + t * d.dim, SearchParams{.k = 10, .ef = 20}, serial.data() + t * 10, sc.data(), nullptr);
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w)
    workers.emplace_back([&, w] {
      std::vector<float> s(10);
      for (int t = w; t < 40; t += 4)
        index.search(d.test.data() + t * d.dim, SearchParams{.k = 10, .ef = 20}, parallel.data() + t * 10, s.data(),
                     nullptr);
    });
  for (auto& th : workers) th.join();
  EXPECT_EQ(serial, parallel);
}

TEST(GraphIndex, BadArgumentsThrow) {
  const OodData d = make_ood(100, 8, 10, 0, 10);
  GraphBuildParams p;
  EXPECT_THROW(GraphIndex(d.keys.data(), 0, 8, d.train.data(), 10, p), ra::Error);
  EXPECT_THROW(GraphIndex(d.keys.data(), 100, 0, d.train.data(), 10, p), ra::Error);
  p.M = 0;
  EXPECT_THROW(GraphIndex(d.keys.data(), 100, 8, d.train.data(), 10, p), ra::Error);
  p.M = 8;
  EXPECT_THROW(GraphIndex(d.keys.data(), 100, 8, nullptr, 10, p), ra::Error);
}

}  // namespace
}  // namespace ra::retriever
