// HeadShard: one (layer, kv head) of a retriever. Here: the answer history that seeds each graph search
// with the member's previous answers (ShardIndexParams::warm_history), and keys held once, in the
// model's dtype, for the whole group.

#include "cpu_retriever/head_shard.h"

#include "common/error.h"
#include "cpu_retriever/dot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace ra::retriever {
namespace {

struct Data {
  int64_t n, dim;
  std::vector<float> keys, values, train, test;
};

// Keys around +m, queries around -m plus a shared offset: out of distribution for the keys, so a
// narrow beam misses much of the top-k.
Data make_data(int64_t n, int64_t dim, int64_t n_train, int64_t n_test, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> m(dim), w(dim);
  for (int64_t j = 0; j < dim; ++j) {
    m[j] = g(rng);
    w[j] = g(rng);
  }
  auto rows = [&](int64_t count, float mean, bool shift) {
    std::vector<float> out(static_cast<size_t>(count * dim));
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t j = 0; j < dim; ++j) out[i * dim + j] = mean * m[j] + (shift ? w[j] : 0.f) + 0.7f * g(rng);
    }
    return out;
  };
  Data d{n, dim, rows(n, 1.f, false), rows(n, 0.f, false), rows(n_train, -1.5f, true), rows(n_test, -1.5f, true)};
  return d;
}

HeadShard make_shard(const Data& d, int warm_history) {
  ShardIndexParams p;
  p.kind = IndexKind::kGraph;
  p.graph.M = 12;
  p.graph.Kq = 32;
  p.graph.threads = 1;
  p.warm_history = warm_history;
  return HeadShard(d.dim, KvDtype::kF32, d.keys.data(), d.values.data(), d.n, 1, d.train.data(),
                   static_cast<int64_t>(d.train.size()) / d.dim, p);
}

// A wide search then a beam of 1 for the same query: seeded with the wide search's answer, the narrow
// one scores every key of it again, so the log-sum-exp over its top-k cannot drop. Without the history
// the beam of 1 alone loses keys on some queries.
TEST(HeadShard, WarmHistorySeedsTheNextSearchWithTheLastAnswer) {
  const Data d = make_data(2500, 24, 600, 40, 5);
  HeadShard warm = make_shard(d, 1), cold = make_shard(d, 0);
  const SearchParams wide{.k = 32, .ef = 128}, narrow{.k = 32, .ef = 1};
  const float scale = 1.0f / std::sqrt(24.0f);
  ShardScratch scratch;
  std::vector<float> o(24);
  int cold_lost = 0;
  for (int64_t t = 0; t < 40; ++t) {
    const float* q = d.test.data() + t * d.dim;
    const float cold_wide = cold.search_attend(0, q, wide, scale, scratch, o.data(), nullptr);
    const float cold_narrow = cold.search_attend(0, q, narrow, scale, scratch, o.data(), nullptr);
    cold_lost += cold_narrow < cold_wide - 1e-4f ? 1 : 0;
    const float warm_wide = warm.search_attend(0, q, wide, scale, scratch, o.data(), nullptr);
    const float warm_narrow = warm.search_attend(0, q, narrow, scale, scratch, o.data(), nullptr);
    EXPECT_GE(warm_narrow, warm_wide - 1e-5f) << "test query " << t;
  }
  EXPECT_GT(cold_lost, 0);  // so the warm shard's narrow searches kept the keys only through their seeds
}

// Evicted tokens go to the KV store once: each query head's graph reads the keys in place, so a shard
// of 4 members grows by exactly what a shard of 1 grows by, and every member still finds them.
TEST(HeadShard, EvictedKeysAreHeldOnceForTheGroup) {
  // 512-byte rows in arenas below the huge-page size (AddressReservation::kHugeMin): the 200 evicted
  // ones cross the arenas' 256 KiB commit steps, so growth shows.
  const Data d = make_data(600, 128, 4 * 200, 4, 11);
  const int64_t n = 400, evicted = 200;
  ShardIndexParams p;
  p.kind = IndexKind::kGraph;
  p.graph.M = 12;
  p.graph.Kq = 32;
  p.graph.threads = 1;
  p.append_capacity = 1000;
  p.graph.append_capacity = 1000;
  size_t grown[2] = {0, 0};
  for (int group : {1, 4}) {
    HeadShard shard(d.dim, KvDtype::kF32, d.keys.data(), d.values.data(), n, group, d.train.data(), 200, p);
    const size_t before = shard.memory_bytes();
    for (int64_t i = n; i < n + evicted; ++i) shard.append(d.keys.data() + i * d.dim, d.values.data() + i * d.dim);
    EXPECT_EQ(shard.size(), n + evicted);
    grown[group == 1 ? 0 : 1] = shard.memory_bytes() - before;

    // At an exhaustive beam every member's top-k is brute force over all 600 rows, tail included.
    const float* q = d.keys.data() + 599 * d.dim;
    std::vector<std::pair<float, int64_t>> all;
    for (int64_t i = 0; i < n + evicted; ++i) {
      float s = 0;
      for (int64_t j = 0; j < d.dim; ++j) s += q[j] * d.keys[i * d.dim + j];
      all.push_back({-s, i});
    }
    std::partial_sort(all.begin(), all.begin() + 8, all.end());
    ASSERT_TRUE(std::any_of(all.begin(), all.begin() + 8, [&](const auto& e) { return e.second >= n; }));
    std::vector<float> o(d.dim);
    ShardScratch scratch;
    for (int m = 0; m < group; ++m) {
      shard.search_attend(m, q, SearchParams{.k = 8, .ef = 1000}, 1.0f, scratch, o.data(), nullptr);
      for (int r = 0; r < 8; ++r) EXPECT_EQ(scratch.merged_ids[r], all[r].second) << "member " << m << " rank " << r;
    }
  }
  EXPECT_GT(grown[0], 0u);
  EXPECT_EQ(grown[1], grown[0]) << "evicted keys copied per member";
}

// The keys live once, in the model's 16-bit dtype: the flat index scores the store's rows (the shard
// holds exactly what a KV store of the same rows holds), and the graphs add only their adjacency and
// search scratch, far below a float32 copy of the keys. Scores are those of the rounded keys.
TEST(HeadShard, HoldsTheKeysOnceInTheModelsDtype) {
  const Data d = make_data(6000, 128, 1000, 1, 13);
  const size_t f32_copy = static_cast<size_t>(d.n * d.dim) * sizeof(float);
  ShardIndexParams p;
  p.graph.M = 8;
  p.graph.Kq = 16;
  p.graph.threads = 1;
  p.append_capacity = 1000;
  KvStore store(d.dim, KvDtype::kBF16, d.n + p.append_capacity);
  store.append(d.keys.data(), d.values.data(), d.n);

  p.kind = IndexKind::kFlat;
  HeadShard flat(d.dim, KvDtype::kBF16, d.keys.data(), d.values.data(), d.n, 1, nullptr, 0, p);
  EXPECT_EQ(flat.memory_bytes(), store.memory_bytes());
  p.kind = IndexKind::kGraph;
  HeadShard graph(d.dim, KvDtype::kBF16, d.keys.data(), d.values.data(), d.n, 1, d.train.data(), 1000, p);
  EXPECT_LT(graph.memory_bytes(), store.memory_bytes() + f32_copy / 2);

  // Exhaustive flat search: its scores are q · (the bf16-rounded key), exactly as attention scores them.
  const float* q = d.test.data();
  ShardScratch scratch;
  std::vector<float> o(d.dim), k(d.dim);
  flat.search_attend(0, q, SearchParams{.k = 5}, 1.0f, scratch, o.data(), nullptr);
  for (int r = 0; r < 5; ++r) {
    store.key(scratch.ids[r], k.data());
    EXPECT_EQ(scratch.scores[r], dot_f32(q, k.data(), d.dim)) << "rank " << r;
    EXPECT_NE(k[0], d.keys[scratch.ids[r] * d.dim]) << "the store's key is the rounded one";
  }
}

// Recall audit (SearchParams::audit_recall): each answer's ids counted against the exact top-k of every
// row the shard holds, the appended tail included. Exact search finds them all; a beam of 1 on keys
// its queries do not fit misses some, and the count is the overlap a brute force gives.
TEST(HeadShard, AuditCountsTheAnswersOverlapWithTheExactTopK) {
  const Data d = make_data(2000, 24, 400, 30, 17);
  ShardIndexParams p;
  p.kind = IndexKind::kFlat;
  HeadShard flat(d.dim, KvDtype::kF32, d.keys.data(), d.values.data(), d.n, 1, nullptr, 0, p);
  HeadShard graph = make_shard(d, 0);
  for (int i = 0; i < 5; ++i) {  // evicted rows: the flat shard's tail, the graph's own tail
    flat.append(d.keys.data() + i * d.dim, d.values.data() + i * d.dim);
    graph.append(d.keys.data() + i * d.dim, d.values.data() + i * d.dim);
  }
  ShardScratch scratch;
  std::vector<float> o(d.dim);
  SearchParams exact{.k = 20};
  exact.audit_recall = true;
  SearchStats flat_stats, graph_stats, unaudited;
  SearchParams narrow{.k = 20, .ef = 1};
  narrow.audit_recall = true;
  int64_t expected_hits = 0;
  std::vector<int64_t> truth(20), answer(20);
  std::vector<float> scores(20);
  for (int64_t t = 0; t < 30; ++t) {
    const float* q = d.test.data() + t * d.dim;
    flat.search_attend(0, q, exact, 1.0f, scratch, o.data(), &flat_stats);
    std::copy_n(scratch.merged_ids.begin(), 20, truth.begin());
    graph.search_attend(0, q, narrow, 1.0f, scratch, o.data(), &graph_stats);
    std::copy_n(scratch.merged_ids.begin(), 20, answer.begin());
    std::sort(truth.begin(), truth.end());
    for (int64_t id : answer) expected_hits += std::binary_search(truth.begin(), truth.end(), id) ? 1 : 0;
    graph.search_attend(0, q, SearchParams{.k = 20, .ef = 1}, 1.0f, scratch, o.data(), &unaudited);
  }
  EXPECT_EQ(flat_stats.recall_wanted, 30 * 20);
  EXPECT_EQ(flat_stats.recall_hits, flat_stats.recall_wanted);
  EXPECT_EQ(graph_stats.recall_wanted, 30 * 20);
  EXPECT_EQ(graph_stats.recall_hits, expected_hits);
  EXPECT_LT(graph_stats.recall_hits, graph_stats.recall_wanted);  // so the audit can tell them apart
  EXPECT_EQ(unaudited.recall_wanted, 0);
}

// A scan budget (ShardIndexParams::scan_fraction): the graph's beam is fitted at the build on the
// training queries and the step's ef is ignored; test queries of the same distribution then scan about
// that fraction, and a larger budget scans more and finds more of the exact top-k.
TEST(HeadShard, AScanBudgetSetsTheBeamFromTheKeysScanned) {
  const Data d = make_data(4000, 24, 600, 40, 19);
  double last_scanned = 0.0;
  int64_t last_hits = -1;
  ShardIndexParams p;
  p.kind = IndexKind::kGraph;
  p.graph.M = 12;
  p.graph.Kq = 32;
  p.graph.threads = 1;
  p.scan_fractions = {0.02, 0.1};
  p.scan_top_k = 20;
  HeadShard shard(d.dim, KvDtype::kF32, d.keys.data(), d.values.data(), d.n, 1, d.train.data(), 600, p);
  ASSERT_EQ(shard.scan_budget_count(), 2u);
  for (int budget = 0; budget < 2; ++budget) {
    const double fraction = p.scan_fractions[static_cast<size_t>(budget)];
    ASSERT_EQ(shard.scan_budgets(budget).size(), 1u);
    EXPECT_GT(shard.scan_budgets(budget)[0].ef, 0);
    ShardScratch scratch;
    std::vector<float> o(d.dim);
    SearchStats stats;
    SearchParams params{.k = 20, .ef = 4000};  // ignored: the budget's beam is used
    params.audit_recall = true;
    params.scan_budget = budget;
    for (int64_t t = 0; t < 40; ++t) shard.search_attend(0, d.test.data() + t * d.dim, params, 1.0f, scratch, o.data(), &stats);
    const double scanned = static_cast<double>(stats.distance_computations) / 40.0 / static_cast<double>(d.n);
    EXPECT_NEAR(scanned, fraction, 0.5 * fraction);
    EXPECT_GT(scanned, last_scanned);
    EXPECT_GE(stats.recall_hits, last_hits);
    last_scanned = scanned;
    last_hits = stats.recall_hits;
  }
  ShardScratch scratch;
  std::vector<float> o(d.dim);
  SearchParams beyond{.k = 20};
  beyond.scan_budget = 2;
  EXPECT_THROW(shard.search_attend(0, d.test.data(), beyond, 1.0f, scratch, o.data(), nullptr), Error);
  ShardIndexParams no_queries;
  no_queries.kind = IndexKind::kIvf;
  no_queries.scan_fractions = {0.05};
#ifdef RA_HAVE_FAISS
  EXPECT_THROW(HeadShard(d.dim, KvDtype::kF32, d.keys.data(), d.values.data(), d.n, 1, nullptr, 0, no_queries), Error);
#endif
}

#ifdef RA_HAVE_FAISS
// IVF's knob is the lists probed: a budget picks nprobe, and test queries scan about that fraction
// (the centroids counted, as every report counts them).
TEST(HeadShard, AScanBudgetSetsTheIvfProbes) {
  const Data d = make_data(6000, 24, 600, 40, 23);
  ShardIndexParams p;
  p.kind = IndexKind::kIvf;
  p.scan_fractions = {0.1};
  p.scan_top_k = 20;
  HeadShard shard(d.dim, KvDtype::kF32, d.keys.data(), d.values.data(), d.n, 2, d.train.data(), 300, p);
  ASSERT_EQ(shard.scan_budget_count(), 1u);
  EXPECT_GT(shard.scan_budgets(0)[0].nprobe, 1);
  EXPECT_EQ(shard.scan_budgets(0)[0].ef, 0);
  ShardScratch scratch;
  std::vector<float> o(d.dim);
  SearchStats stats;
  for (int64_t t = 0; t < 40; ++t) {
    shard.search_attend(t % 2, d.test.data() + t * d.dim, SearchParams{.k = 20, .nprobe = 1}, 1.0f, scratch,
                        o.data(), &stats);
  }
  EXPECT_NEAR(static_cast<double>(stats.distance_computations) / 40.0 / 6000.0, 0.1, 0.05);
}
#endif

}  // namespace
}  // namespace ra::retriever
