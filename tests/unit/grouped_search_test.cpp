// One graph per kv head, searched by its query group (issue 16 item 3): GraphIndex::search_group shares
// one traversal among the group's heads. Here: with a beam that covers the graph it returns exactly each
// head's exhaustive top-k (ids and scores, bitwise those of a flat search), before and after tail keys
// arrive; a narrow grouped search finds about what each head's own traversal of the same graph finds;
// and HeadShard::search_attend_group answers what per-member search_attend answers. The interleaved
// searches (separate beams stepped in turn on one thread) answer bitwise what each search alone does,
// at any beam width; and the visited set behaves as a set across searches of different graphs.

#include "common/error.h"
#include "cpu_retriever/flat_index.h"
#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/head_shard.h"
#include "cpu_retriever/row_arena.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <set>
#include <vector>

namespace ra::retriever {
namespace {

constexpr int kGroup = 4;

// Keys of low intrinsic dimension around +m; each head's queries around -1.5 m plus a head offset, at a
// head-specific norm (the grouped frontier must not favour the head with the largest queries).
struct GroupData {
  int64_t n, dim;
  std::vector<float> keys, values;
  std::vector<float> train;  // [kGroup][n_train][dim]
  std::vector<float> test;   // [n_test][kGroup][dim]: one decode step's queries of the group, together
  int64_t n_train, n_test;
};

GroupData make_group_data(int64_t n, int64_t dim, int64_t n_train, int64_t n_test, uint64_t seed) {
  constexpr int64_t r = 12;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> m(dim), basis(dim * r), offset(kGroup * dim);
  for (auto& x : m) x = g(rng);
  for (auto& x : basis) x = g(rng) / 3.f;
  for (auto& x : offset) x = 0.8f * g(rng);
  auto row = [&](float* out, float mean, const float* shift, float norm_scale) {
    float z[r];
    for (auto& x : z) x = g(rng);
    for (int64_t j = 0; j < dim; ++j) {
      float v = mean * m[j] + (shift ? shift[j] : 0.f) + 0.1f * g(rng);
      for (int64_t l = 0; l < r; ++l) v += basis[j * r + l] * z[l];
      out[j] = norm_scale * v;
    }
  };
  GroupData d{n, dim, std::vector<float>(n * dim), std::vector<float>(n * dim), std::vector<float>(kGroup * n_train * dim),
              std::vector<float>(n_test * kGroup * dim), n_train, n_test};
  for (int64_t i = 0; i < n; ++i) row(d.keys.data() + i * dim, 1.f, nullptr, 1.f);
  for (auto& v : d.values) v = g(rng);
  for (int h = 0; h < kGroup; ++h) {
    const float scale = 0.5f + 0.75f * static_cast<float>(h);
    for (int64_t i = 0; i < n_train; ++i) row(d.train.data() + (h * n_train + i) * dim, -1.5f, &offset[h * dim], scale);
    for (int64_t t = 0; t < n_test; ++t) row(d.test.data() + (t * kGroup + h) * dim, -1.5f, &offset[h * dim], scale);
  }
  return d;
}

std::shared_ptr<RowArena> bf16_arena(const std::vector<float>& keys, int64_t n, int64_t dim, int64_t extra) {
  auto arena = std::make_shared<RowArena>(KvDtype::kBF16, dim, n + extra);
  arena->append(keys.data(), n);
  return arena;
}

GraphBuildParams small_params() {
  GraphBuildParams p;
  p.M = 12;
  p.Kq = 32;
  p.threads = 1;
  return p;
}

// With a beam as large as the graph (ef >= n) the shared traversal reaches every key, so each head's
// answer is its exhaustive top-k, equal to a flat search over the same bf16 rows: ids and scores.
TEST(GroupedSearch, WideBeamGivesEveryHeadItsExactTopK) {
  const GroupData d = make_group_data(1500, 32, 150, 12, 3);
  const int64_t extra = 40;
  auto arena = bf16_arena(d.keys, d.n, d.dim, extra);
  GraphIndex graph(arena, d.n, d.train.data(), kGroup * d.n_train, small_params());
  const int k = 20;
  const SearchParams wide{.k = k, .ef = 4000};
  auto check_all = [&](int64_t rows, const char* when) {
    std::vector<int64_t> ids(kGroup * k), want_ids(k);
    std::vector<float> scores(kGroup * k), want_scores(k);
    int found[kGroup];
    for (int64_t t = 0; t < d.n_test; ++t) {
      const float* qs = d.test.data() + t * kGroup * d.dim;
      graph.search_group(qs, kGroup, wide, ids.data(), scores.data(), found, nullptr);
      for (int h = 0; h < kGroup; ++h) {
        const int want = exact_top_k(qs + h * d.dim, arena->data(), KvDtype::kBF16, rows, d.dim, k, want_ids.data(),
                                     want_scores.data());
        ASSERT_EQ(found[h], want) << when << ", step " << t << ", head " << h;
        for (int i = 0; i < want; ++i) {
          EXPECT_EQ(ids[h * k + i], want_ids[i]) << when << ", step " << t << ", head " << h << ", rank " << i;
          EXPECT_EQ(scores[h * k + i], want_scores[i]) << when << ", step " << t << ", head " << h << ", rank " << i;
        }
      }
    }
  };
  check_all(d.n, "after the build");
  // Tail keys, each with the group's four queries (the merge projects each), then scanned exactly.
  std::mt19937_64 rng(9);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> key(d.dim);
  for (int64_t i = 0; i < extra; ++i) {
    for (int64_t j = 0; j < d.dim; ++j) key[j] = d.keys[(i * 7 % d.n) * d.dim + j] + 0.3f * g(rng);
    arena->append(key.data());
    graph.adopt_next_row(d.test.data() + (i % d.n_test) * kGroup * d.dim, kGroup);
  }
  check_all(d.n + extra, "with a tail");
}

double recall(const std::vector<int64_t>& got, int n_got, const std::vector<int64_t>& want, int n_want) {
  const std::set<int64_t> truth(want.begin(), want.begin() + n_want);
  int hit = 0;
  for (int i = 0; i < n_got; ++i) hit += truth.count(got[i]) ? 1 : 0;
  return n_want == 0 ? 1.0 : static_cast<double>(hit) / n_want;
}

// A narrow beam: the shared traversal serves every head about as well as that head's own traversal of
// the same graph, although it visits each key once for the four.
TEST(GroupedSearch, NarrowBeamRecallMatchesPerHeadTraversals) {
  const GroupData d = make_group_data(6000, 32, 400, 40, 11);
  auto arena = bf16_arena(d.keys, d.n, d.dim, 0);
  GraphIndex graph(arena, d.n, d.train.data(), kGroup * d.n_train, small_params());
  const int k = 32;
  const SearchParams narrow{.k = k, .ef = 48};
  std::vector<int64_t> ids(kGroup * k), own(k), want(k);
  std::vector<float> scores(kGroup * k), own_scores(k), want_scores(k);
  int found[kGroup];
  double grouped = 0, separate = 0, worst_head = 1;
  SearchStats grouped_work, separate_work;
  for (int64_t t = 0; t < d.n_test; ++t) {
    const float* qs = d.test.data() + t * kGroup * d.dim;
    graph.search_group(qs, kGroup, narrow, ids.data(), scores.data(), found, &grouped_work);
    for (int h = 0; h < kGroup; ++h) {
      const float* q = qs + h * d.dim;
      const int w = exact_top_k(q, arena->data(), KvDtype::kBF16, d.n, d.dim, k, want.data(), want_scores.data());
      const int got = graph.search(q, narrow, own.data(), own_scores.data(), &separate_work);
      const std::vector<int64_t> head_ids(ids.begin() + h * k, ids.begin() + (h + 1) * k);
      const double r = recall(head_ids, found[h], want, w);
      grouped += r;
      worst_head = std::min(worst_head, r);
      separate += recall(own, got, want, w);
    }
  }
  grouped /= static_cast<double>(d.n_test * kGroup);
  separate /= static_cast<double>(d.n_test * kGroup);
  std::printf("recall@%d, ef %d: grouped %.3f (worst head-step %.3f), per-head %.3f; keys scored per head: grouped %.0f, "
              "per-head %.0f\n",
              k, narrow.ef, grouped, worst_head, separate,
              static_cast<double>(grouped_work.distance_computations) / static_cast<double>(d.n_test * kGroup),
              static_cast<double>(separate_work.distance_computations) / static_cast<double>(d.n_test * kGroup));
  EXPECT_GE(grouped, separate - 0.02);
  EXPECT_GE(grouped, 0.9);
}

// The shard's grouped path gives each member what its own search_attend gives when the beams cover
// the keys (the same top-k, so the same partial attention).
TEST(GroupedSearch, ShardGroupedAttendEqualsPerMemberAttend) {
  const GroupData d = make_group_data(1200, 32, 120, 6, 5);
  ShardIndexParams p;
  p.kind = IndexKind::kGraph;
  p.graph = small_params();
  p.graph_per_kv_head = true;
  p.warm_history = 2;
  HeadShard grouped(d.dim, KvDtype::kBF16, d.keys.data(), d.values.data(), d.n, kGroup, d.train.data(), d.n_train, p);
  HeadShard single(d.dim, KvDtype::kBF16, d.keys.data(), d.values.data(), d.n, kGroup, d.train.data(), d.n_train, p);
  ASSERT_TRUE(grouped.shares_traversals());
  const SearchParams wide{.k = 24, .ef = 3000};
  const float scale = 1.0f / std::sqrt(32.0f);
  ShardScratch scratch;
  std::vector<float> o(kGroup * d.dim), o_one(d.dim);
  float lse[kGroup];
  for (int64_t t = 0; t < d.n_test; ++t) {
    const float* qs = d.test.data() + t * kGroup * d.dim;
    grouped.search_attend_group(0, kGroup, qs, wide, scale, scratch, o.data(), lse, nullptr);
    for (int h = 0; h < kGroup; ++h) {
      const float want = single.search_attend(h, qs + h * d.dim, wide, scale, scratch, o_one.data(), nullptr);
      EXPECT_EQ(lse[h], want) << "step " << t << ", member " << h;
      for (int64_t j = 0; j < d.dim; ++j) ASSERT_EQ(o[h * d.dim + j], o_one[j]) << "step " << t << ", member " << h;
    }
  }
  // A run of two members shares a traversal too, and is placed at its own members.
  grouped.search_attend_group(2, 2, d.test.data() + 2 * d.dim, wide, scale, scratch, o.data(), lse, nullptr);
  const float want = single.search_attend(3, d.test.data() + 3 * d.dim, wide, scale, scratch, o_one.data(), nullptr);
  EXPECT_EQ(lse[1], want);
  EXPECT_THROW(grouped.search_attend_group(3, 2, d.test.data(), wide, scale, scratch, o.data(), lse, nullptr), Error);
}

// Separate searches stepped in turn give each query exactly its own search: narrow beams (the answers
// depend on the traversal order), each query with its own seeds, before and after tail keys arrive.
TEST(InterleavedSearch, EachSearchAnswersWhatItsOwnSearchAnswers) {
  const GroupData d = make_group_data(4000, 32, 300, 16, 21);
  const int64_t extra = 50;
  auto arena = bf16_arena(d.keys, d.n, d.dim, extra);
  GraphIndex graph(arena, d.n, d.train.data(), kGroup * d.n_train, small_params());
  const int k = 16;
  auto check_all = [&](const char* when) {
    std::vector<int64_t> ids(kGroup * k), one_ids(k);
    std::vector<float> scores(kGroup * k), one_scores(k);
    int found[kGroup];
    for (const int ef : {8, 24, 64}) {
      for (int64_t t = 0; t < d.n_test; ++t) {
        const float* qs = d.test.data() + t * kGroup * d.dim;
        // Query h is seeded with the rows 37 h + 5 t, ... (stand-ins for its previous answers); the steps
        // alternate the nodes expanded per step (1, 2, 3).
        std::vector<int64_t> seeds(kGroup * 6);
        SearchParams params[kGroup];
        for (int h = 0; h < kGroup; ++h) {
          for (int i = 0; i < 6; ++i) seeds[h * 6 + i] = (37 * h + 5 * t + 101 * i) % d.n;
          params[h] = SearchParams{.k = k, .ef = ef, .seeds = seeds.data() + h * 6, .n_seeds = h == 0 ? 0 : 6};
          params[h].expand = 1 + static_cast<int>(t % 3);
        }
        for (const int n : {1, 2, kGroup}) {
          SearchStats together;
          graph.search_interleaved(qs, n, params, ids.data(), scores.data(), found, &together);
          SearchStats alone;
          for (int h = 0; h < n; ++h) {
            const int want = graph.search(qs + h * d.dim, params[h], one_ids.data(), one_scores.data(), &alone);
            ASSERT_EQ(found[h], want) << when << ", ef " << ef << ", step " << t << ", " << n << " searches, query " << h;
            for (int i = 0; i < want; ++i) {
              ASSERT_EQ(ids[h * k + i], one_ids[i]) << when << ", ef " << ef << ", step " << t << ", query " << h;
              ASSERT_EQ(scores[h * k + i], one_scores[i]) << when << ", ef " << ef << ", step " << t << ", query " << h;
            }
          }
          EXPECT_EQ(together.distance_computations, alone.distance_computations);
          EXPECT_EQ(together.hops, alone.hops);
        }
      }
    }
  };
  check_all("after the build");
  std::mt19937_64 rng(4);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> key(d.dim);
  for (int64_t i = 0; i < extra; ++i) {
    for (int64_t j = 0; j < d.dim; ++j) key[j] = d.keys[(i * 11 % d.n) * d.dim + j] + 0.3f * g(rng);
    arena->append(key.data());
    graph.adopt_next_row(d.test.data() + (i % d.n_test) * kGroup * d.dim, kGroup);
  }
  check_all("with a tail");

  SearchParams mixed[2] = {SearchParams{.k = k, .ef = 8}, SearchParams{.k = k, .ef = 9}};
  std::vector<int64_t> ids(2 * k);
  std::vector<float> scores(2 * k);
  int found[2];
  EXPECT_THROW(graph.search_interleaved(d.test.data(), 2, mixed, ids.data(), scores.data(), found, nullptr), Error);
}

// Expanding the best two or three candidates per step (their loads in flight together) finds about what
// strictly best-first finds at the same beam, for a few more keys scored.
TEST(ExpandedSearch, FindsAboutWhatBestFirstFinds) {
  const GroupData d = make_group_data(6000, 32, 400, 40, 13);
  auto arena = bf16_arena(d.keys, d.n, d.dim, 0);
  GraphIndex graph(arena, d.n, d.train.data(), kGroup * d.n_train, small_params());
  const int k = 32;
  std::vector<int64_t> got(k), want(k);
  std::vector<float> got_scores(k), want_scores(k);
  for (const int ef : {32, 64}) {
    double r[4] = {};
    SearchStats work[4];
    for (int64_t t = 0; t < d.n_test; ++t) {
      for (int h = 0; h < kGroup; ++h) {
        const float* q = d.test.data() + (t * kGroup + h) * d.dim;
        const int w = exact_top_k(q, arena->data(), KvDtype::kBF16, d.n, d.dim, k, want.data(), want_scores.data());
        for (const int x : {1, 2, 3}) {
          SearchParams p{.k = k, .ef = ef};
          p.expand = x;
          const int n = graph.search(q, p, got.data(), got_scores.data(), &work[x]);
          r[x] += recall(got, n, want, w) / static_cast<double>(d.n_test * kGroup);
        }
      }
    }
    std::printf("recall@%d, ef %d, expand 1 / 2 / 3: %.3f / %.3f / %.3f; keys scored %lld / %lld / %lld\n", k, ef, r[1],
                r[2], r[3], static_cast<long long>(work[1].distance_computations),
                static_cast<long long>(work[2].distance_computations),
                static_cast<long long>(work[3].distance_computations));
    EXPECT_GE(r[2], r[1] - 0.02) << "ef " << ef;
    EXPECT_GE(r[3], r[1] - 0.03) << "ef " << ef;
    EXPECT_GE(work[2].distance_computations, work[1].distance_computations * 9 / 10) << "ef " << ef;
  }
}

// The shard's interleaved path, warm seeds on, over decode steps: each member's partial attention and
// its recorded answers (the next step's seeds) are exactly those of member-by-member search_attend.
TEST(InterleavedSearch, ShardInterleavedAttendEqualsPerMemberAttend) {
  const GroupData d = make_group_data(3000, 32, 200, 12, 8);
  ShardIndexParams p;
  p.kind = IndexKind::kGraph;
  p.graph = small_params();
  p.graph_per_kv_head = true;
  p.warm_history = 2;
  HeadShard interleaved(d.dim, KvDtype::kBF16, d.keys.data(), d.values.data(), d.n, kGroup, d.train.data(),
                        d.n_train, p);
  HeadShard single(d.dim, KvDtype::kBF16, d.keys.data(), d.values.data(), d.n, kGroup, d.train.data(), d.n_train, p);
  const SearchParams narrow{.k = 12, .ef = 16};
  const float scale = 1.0f / std::sqrt(32.0f);
  ShardScratch scratch;
  std::vector<float> o(kGroup * d.dim), o_one(d.dim);
  float lse[kGroup];
  for (int64_t t = 0; t < d.n_test; ++t) {
    const float* qs = d.test.data() + t * kGroup * d.dim;
    // Members 0-1 as one run of two, 2-3 as another: each run is placed at its own members.
    interleaved.search_attend_interleaved(0, 2, qs, narrow, scale, scratch, o.data(), lse, nullptr);
    interleaved.search_attend_interleaved(2, 2, qs + 2 * d.dim, narrow, scale, scratch, o.data() + 2 * d.dim, lse + 2,
                                          nullptr);
    for (int h = 0; h < kGroup; ++h) {
      const float want = single.search_attend(h, qs + h * d.dim, narrow, scale, scratch, o_one.data(), nullptr);
      EXPECT_EQ(lse[h], want) << "step " << t << ", member " << h;
      for (int64_t j = 0; j < d.dim; ++j) ASSERT_EQ(o[h * d.dim + j], o_one[j]) << "step " << t << ", member " << h;
    }
  }
  EXPECT_THROW(interleaved.search_attend_interleaved(3, 2, d.test.data(), narrow, scale, scratch, o.data(), lse,
                                                     nullptr),
               Error);
}

// The visited set: a mark is seen until the next begin(), which clears exactly the last search's marks,
// also when a search's graph is larger than the last one (the set grows) or smaller.
TEST(VisitedSet, MarksLastUntilTheNextSearch) {
  VisitedSet v;
  v.begin(100);
  EXPECT_FALSE(v.test_and_set(3));
  EXPECT_TRUE(v.test_and_set(3));
  EXPECT_FALSE(v.test_and_set(64));
  EXPECT_FALSE(v.test_and_set(65));
  EXPECT_TRUE(v.test_and_set(65));
  EXPECT_FALSE(v.test_and_set(99));
  v.begin(1000);
  for (const uint32_t id : {3u, 64u, 65u, 99u, 999u}) EXPECT_FALSE(v.test_and_set(id)) << id;
  EXPECT_TRUE(v.test_and_set(999));
  v.begin(10);
  for (uint32_t id = 0; id < 10; ++id) EXPECT_FALSE(v.test_and_set(id)) << id;
  v.begin(1000);
  EXPECT_FALSE(v.test_and_set(999));  // cleared although the last search covered only 10 nodes
  EXPECT_FALSE(v.test_and_set(3));
}

}  // namespace
}  // namespace ra::retriever
