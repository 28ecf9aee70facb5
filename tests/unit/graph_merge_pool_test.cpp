// GraphIndex tail merges on a MaintenancePool (issue 16 item 5): a process's thread count stays fixed
// however many indexes merge, appends only enqueue, thresholds are staggered, a merge touches only the
// nodes it links (no rebuild), and every key stays searchable exactly once throughout.

#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/maintenance_pool.h"

#include "tests/support/random_matrix.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace ra::retriever {
namespace {

int count_threads() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// At an ef above the index's size the beam expands every node it reaches, so the answer is exact only
// if every key is reachable (graph) or scanned (tail), and each exactly once: every id returned must
// score at least the exact k-th best (in double, so kernel rounding cannot decide) and be distinct.
void expect_exact(const GraphIndex& index, const float* keys, const float* queries, int n_queries) {
  const int k = 10;
  const int64_t n = index.size(), dim = index.dim();
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  for (int t = 0; t < n_queries; ++t) {
    const float* q = queries + t * dim;
    const int got = index.search(q, SearchParams{.k = k, .ef = static_cast<int>(n) + 1}, ids.data(), scores.data(),
                                 nullptr);
    ASSERT_EQ(got, k);
    std::vector<double> exact(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < dim; ++j) acc += double(q[j]) * keys[i * dim + j];
      exact[i] = acc;
    }
    std::vector<double> sorted = exact;
    std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
    for (int i = 0; i < k; ++i) {
      ASSERT_TRUE(ids[i] >= 0 && ids[i] < n);
      EXPECT_GE(exact[ids[i]], sorted[k - 1] - 1e-4) << "query " << t << " rank " << i;
    }
    EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), static_cast<size_t>(k));
  }
}

// Holds a pool's threads at a gate, so merges queue behind it.
struct Gate {
  std::mutex mutex;
  std::condition_variable cv;
  bool open = false;
  void hold(MaintenancePool& pool) {
    for (int i = 0; i < pool.threads(); ++i) {
      std::promise<void> started;
      pool.submit(nullptr, {[&] {
        started.set_value();
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return open; });
      }});
      started.get_future().wait();
    }
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    cv.notify_all();
  }
};

GraphBuildParams small_params() {
  GraphBuildParams p;
  p.M = 8;
  p.Kq = 16;
  p.ef_construction = 16;
  p.entry_samples = 8;
  p.threads = 1;  // the build's own OpenMP team stays at one thread: only the pool may add threads
  return p;
}

TEST(GraphMergePool, ThreadCountStaysConstantWhile64IndexesAppend10KKeysEach) {
  constexpr int kIndexes = 64;
  constexpr int64_t kBuild = 300, kAppend = 10000, kDim = 8;
  MaintenancePool pool(2);
  GraphBuildParams p = small_params();
  p.merge_threshold = 128;
  p.merge_pool = &pool;
  p.append_capacity = kAppend;
  std::vector<std::vector<float>> keys(kIndexes);
  std::vector<std::unique_ptr<GraphIndex>> indexes;
  const std::vector<float> train = test::random_matrix(200, kDim, 7);
  for (int i = 0; i < kIndexes; ++i) {
    keys[i] = test::random_matrix(kBuild + kAppend, kDim, 100 + i);
    p.merge_stagger_key = i;
    indexes.push_back(std::make_unique<GraphIndex>(keys[i].data(), kBuild, kDim, train.data(), 200, p));
  }
  const int before = count_threads();  // the pool's threads included
  int most = before;
  for (int64_t t = 0; t < kAppend; ++t) {
    for (int i = 0; i < kIndexes; ++i) {
      const float* q = t % 8 == 0 ? train.data() + (t % 200) * kDim : nullptr;  // some tokens bring queries
      ASSERT_EQ(indexes[i]->append(keys[i].data() + (kBuild + t) * kDim, q), kBuild + t);
    }
    if (t % 250 == 0) most = std::max(most, count_threads());
  }
  for (auto& index : indexes) index->wait_for_merge();
  most = std::max(most, count_threads());
  EXPECT_EQ(most, before) << "threads grew while merging";
  const std::vector<float> queries = test::random_matrix(4, kDim, 9);
  for (int i = 0; i < kIndexes; ++i) {
    const GraphIndex& index = *indexes[i];
    EXPECT_EQ(index.size(), kBuild + kAppend);
    EXPECT_LT(index.tail_size(), index.effective_merge_threshold()) << "index " << i;
    EXPECT_GT(index.graph_size(), kBuild + kAppend / 2) << "index " << i;
    if (i % 16 == 0) expect_exact(index, keys[i].data(), queries.data(), 4);
  }
  EXPECT_EQ(pool.take_error(), nullptr);
}

TEST(GraphMergePool, AppendsOnlyEnqueueTheMerge) {
  MaintenancePool pool(1);
  Gate gate;
  gate.hold(pool);  // the pool is busy: a merge can only wait in its queue
  GraphBuildParams p = small_params();
  p.merge_threshold = 16;
  p.merge_pool = &pool;
  const int64_t n = 500, extra = 100, dim = 8;
  const std::vector<float> keys = test::random_matrix(n + extra, dim, 3);
  const std::vector<float> train = test::random_matrix(100, dim, 4);
  GraphIndex index(keys.data(), n, dim, train.data(), 100, p);
  for (int64_t i = 0; i < extra; ++i) EXPECT_EQ(index.append(keys.data() + (n + i) * dim), n + i);
  EXPECT_EQ(index.tail_size(), extra);  // every append returned without merging
  EXPECT_TRUE(index.merge_running());
  EXPECT_EQ(pool.queued(), 1u);  // one merge per index, however far past the threshold
  const std::vector<float> queries = test::random_matrix(3, dim, 5);
  expect_exact(index, keys.data(), queries.data(), 3);
  gate.release();
  index.wait_for_merge();
  EXPECT_FALSE(index.merge_running());
  EXPECT_EQ(index.tail_size(), 0);
  EXPECT_EQ(index.graph_size(), n + extra);
  expect_exact(index, keys.data(), queries.data(), 3);
}

TEST(GraphMergePool, WithoutAPoolTheCrossingAppendMerges) {
  GraphBuildParams p = small_params();
  p.merge_threshold = 20;
  const int64_t n = 400, dim = 8;
  const std::vector<float> keys = test::random_matrix(n + 50, dim, 11);
  const std::vector<float> train = test::random_matrix(100, dim, 12);
  GraphIndex index(keys.data(), n, dim, train.data(), 100, p);
  for (int64_t i = 0; i < 19; ++i) index.append(keys.data() + (n + i) * dim);
  EXPECT_EQ(index.tail_size(), 19);
  index.append(keys.data() + (n + 19) * dim);
  EXPECT_EQ(index.tail_size(), 0);
  EXPECT_EQ(index.graph_size(), n + 20);
  EXPECT_FALSE(index.merge_running());
}

TEST(GraphMergePool, ThresholdsAreStaggeredDeterministically) {
  GraphBuildParams p = small_params();
  p.merge_threshold = 64;
  const int64_t n = 100, dim = 4;
  const std::vector<float> keys = test::random_matrix(n, dim, 1);
  std::set<int> distinct;
  for (int64_t key = 0; key < 64; ++key) {
    p.merge_stagger_key = key;
    const GraphIndex a(keys.data(), n, dim, keys.data(), n, p);
    const GraphIndex b(keys.data(), n, dim, keys.data(), n, p);
    EXPECT_EQ(a.effective_merge_threshold(), b.effective_merge_threshold());
    EXPECT_GE(a.effective_merge_threshold(), 32);
    EXPECT_LT(a.effective_merge_threshold(), 96);
    distinct.insert(a.effective_merge_threshold());
  }
  EXPECT_GE(distinct.size(), 24u);  // 64 keys over 64 values: most differ
  p.merge_stagger_key = -1;
  EXPECT_EQ(GraphIndex(keys.data(), n, dim, keys.data(), n, p).effective_merge_threshold(), 64);
}

TEST(GraphMergePool, AnIndexOrAPoolCanGoWhileAMergeIsQueued) {
  MaintenancePool pool(1);
  Gate gate;
  gate.hold(pool);
  GraphBuildParams p = small_params();
  p.merge_threshold = 8;
  p.merge_pool = &pool;
  const int64_t n = 300, dim = 8;
  const std::vector<float> keys = test::random_matrix(n + 40, dim, 21);
  const std::vector<float> train = test::random_matrix(50, dim, 22);
  {
    GraphIndex doomed(keys.data(), n, dim, train.data(), 50, p);
    for (int64_t i = 0; i < 10; ++i) doomed.append(keys.data() + (n + i) * dim);
    EXPECT_EQ(pool.queued(), 1u);
  }  // its queued merge is cancelled, not run on a dead index
  EXPECT_EQ(pool.queued(), 0u);
  GraphIndex index(keys.data(), n, dim, train.data(), 50, p);
  for (int64_t i = 0; i < 10; ++i) index.append(keys.data() + (n + i) * dim);
  EXPECT_EQ(pool.queued(), 1u);
  std::thread stopper([&] { pool.shutdown(false); });
  while (pool.queued() > 0) std::this_thread::yield();
  gate.release();
  stopper.join();
  index.wait_for_merge();  // the cancelled merge ends the wait
  EXPECT_EQ(index.tail_size(), 10);
  for (int64_t i = 10; i < 40; ++i) index.append(keys.data() + (n + i) * dim);  // a closed pool: keys stay in the tail
  EXPECT_EQ(index.tail_size(), 40);
  const std::vector<float> queries = test::random_matrix(3, dim, 23);
  expect_exact(index, keys.data(), queries.data(), 3);
  index.merge_tail();  // an explicit merge still works
  EXPECT_EQ(index.tail_size(), 0);
  expect_exact(index, keys.data(), queries.data(), 3);
}

// The merge is incremental: it appends the new nodes and rewrites only the lists it links into.
TEST(GraphMergePool, AMergeRewritesOnlyTheListsItLinks) {
  GraphBuildParams p = small_params();
  p.M = 16;
  const int64_t n = 3000, m = 30, dim = 16;
  const std::vector<float> keys = test::random_matrix(n + m, dim, 31);
  const std::vector<float> train = test::random_matrix(300, dim, 32);
  GraphIndex index(keys.data(), n, dim, train.data(), 300, p);
  const GraphCsr before = index.adjacency();
  for (int64_t i = 0; i < m; ++i) index.append(keys.data() + (n + i) * dim);
  index.merge_tail();
  const GraphCsr after = index.adjacency();
  ASSERT_EQ(after.nodes(), n + m);
  int64_t changed = 0;
  for (int64_t v = 0; v < n; ++v) {
    const auto a = before.out(v), b = after.out(v);
    changed += !std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
  // At most M reverse edges and one parent edge per new key.
  EXPECT_LE(changed, m * (p.M + 1));
  EXPECT_GT(changed, 0);
  std::printf("merge of %lld keys into %lld rewrote %lld old lists\n", static_cast<long long>(m),
              static_cast<long long>(n), static_cast<long long>(changed));
}

}  // namespace
}  // namespace ra::retriever
