#include "cpu_retriever/graph_index.h"

#include "common/error.h"
#include "common/splitmix64.h"
#include "cpu_retriever/graph_adjacency.h"
#include "cpu_retriever/graph_build.h"
#include "cpu_retriever/graph_merge.h"
#include "cpu_retriever/maintenance_pool.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <utility>

namespace ra::retriever {
namespace {

// The index's merge threshold: T, or with a stagger key T / 2 + (uniform in [0, T) drawn from the key),
// in [T/2, 3T/2) (graph_index.h).
int staggered_threshold(int threshold, int64_t key) {
  if (threshold <= 1 || key < 0) return threshold;
  const auto t = static_cast<uint64_t>(threshold);
  return static_cast<int>(t / 2 + SplitMix64(static_cast<uint64_t>(key)).below(t));
}

}  // namespace

GraphIndex::GraphIndex(const float* keys, int64_t n, int64_t dim, const float* train_queries, int64_t nq,
                       const GraphBuildParams& params, const int64_t* train_topk, int64_t topk_width)
    : keys_(keys), n_(n), dim_(dim), params_(params) {
  RA_REQUIRE(keys != nullptr && n > 0, "graph index: needs at least one key (got n = {})", n);
  RA_REQUIRE(dim > 0, "graph index: dim must be positive (got {})", dim);
  check_params(train_queries, nq, train_topk, topk_width);
  RA_REQUIRE(params.append_capacity > 0, "graph index: append_capacity must be positive (got {})",
             params.append_capacity);
  own_arena_ = std::make_shared<RowArena>(dim, params.append_capacity);
  arena_ = own_arena_;
  build(KeyRows{keys, n, nullptr, dim}, train_queries, nq, train_topk, topk_width, {}, {});
}

GraphIndex::GraphIndex(std::shared_ptr<const RowArena> rows, int64_t n, const float* train_queries, int64_t nq,
                       const GraphBuildParams& params, const int64_t* train_topk, int64_t topk_width,
                       std::span<const int64_t> key_lists, KeyQueries key_queries)
    : GraphIndex(std::move(rows), n, params) {
  check_params(train_queries, nq, train_topk, topk_width);
  const auto want = static_cast<size_t>(key_list_count(n, params) * std::min<int64_t>(params.Kq, n));
  RA_REQUIRE(key_lists.empty() || key_lists.size() == want,
             "graph index: {} precomputed key-list entries, {} expected (key_top_lists of the same keys and params)",
             key_lists.size(), want);
  const KvDtype dtype = arena_->dtype();
  if (dtype != KvDtype::kQ8) {
    // float32 or 16-bit rows: the build scores the rows in place (a 16-bit row exactly as its float32
    // widening, dot.h), without a float32 copy of the layer.
    build(KeyRows{arena_->data(), n, nullptr, dim_, dtype}, train_queries, nq, train_topk, topk_width, key_lists,
          key_queries);
    return;
  }
  // int8 rows: the build runs on their dequantised copy, and searches score the codes as attention
  // does (dot_q8.h), which differs from the copy's float32 scores by roundings only.
  std::vector<float> keys;
  {
    const GraphBuildStepTimer timer(&GraphBuildSteps::widen);
    keys = arena_->widened(n, params.threads > 0 ? params.threads : omp_get_max_threads());
  }
  build(KeyRows{keys.data(), n, nullptr, dim_}, train_queries, nq, train_topk, topk_width, key_lists, key_queries);
}

void GraphIndex::check_params(const float* train_queries, int64_t nq, const int64_t* train_topk,
                              int64_t topk_width) const {
  const GraphBuildParams& params = params_;
  RA_REQUIRE(params.merge_threshold >= 0, "graph index: merge_threshold must be >= 0 (got {})", params.merge_threshold);
  RA_REQUIRE(n_ <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()),
             "graph index: {} keys exceed the 32-bit node id range", n_);
  RA_REQUIRE(nq >= 0 && (nq == 0 || train_queries != nullptr), "graph index: bad training queries (nq = {})", nq);
  RA_REQUIRE(params.M > 0, "graph index: M must be positive (got {})", params.M);
  RA_REQUIRE(params.Kq > 1 || train_topk != nullptr, "graph index: Kq must be > 1 (got {})", params.Kq);
  RA_REQUIRE(train_topk == nullptr || topk_width > 0, "graph index: top-k lists need a positive width");
  RA_REQUIRE(params.key_lists_stride >= 0, "graph index: key_lists_stride must be >= 0 (got {})",
             params.key_lists_stride);
  // int8 KV rows are an 8-bit copy already: searches walk them in place, and a second copy would only
  // cost memory (and score differently from attention).
  RA_REQUIRE(!params.int8_navigation || arena_ == nullptr || arena_->dtype() != KvDtype::kQ8,
             "graph index: int8_navigation over int8 key rows: the searches walk the stored int8 keys "
             "directly; turn the 8-bit navigation copy off (graph navigation exact)");
}

void GraphIndex::build(const KeyRows& keys, const float* train_queries, int64_t nq, const int64_t* train_topk,
                       int64_t topk_width, std::span<const int64_t> key_lists, KeyQueries key_queries) {
  const GraphBuildParams& params = params_;
  const int64_t n = n_, dim = dim_;
  // Optional seeded subsample of the training queries (rows kept in their original order).
  const float* queries = train_queries;
  const int64_t* topk = train_topk;
  std::vector<float> sub_q;
  std::vector<int64_t> sub_topk;
  if (params.max_train_queries > 0 && nq > params.max_train_queries) {
    std::vector<int64_t> rows(static_cast<size_t>(nq));
    std::iota(rows.begin(), rows.end(), 0);
    std::mt19937_64 rng(params.seed);
    for (int64_t i = 0; i < params.max_train_queries; ++i) {  // partial Fisher-Yates, own draw for portability
      const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(nq - i));
      std::swap(rows[i], rows[j]);
    }
    rows.resize(static_cast<size_t>(params.max_train_queries));
    std::sort(rows.begin(), rows.end());
    for (int64_t r : rows) {
      sub_q.insert(sub_q.end(), train_queries + r * dim, train_queries + (r + 1) * dim);
      if (train_topk) sub_topk.insert(sub_topk.end(), train_topk + r * topk_width, train_topk + (r + 1) * topk_width);
    }
    nq = params.max_train_queries;
    queries = sub_q.data();
    key_queries = {};  // their ids name rows of the whole set
    if (train_topk) topk = sub_topk.data();
  }

  std::vector<int64_t> computed;
  const int64_t n_key_lists = key_list_count(n, params), key_width = std::min<int64_t>(params.Kq, n);
  std::vector<int64_t> computed_key_lists;
  const bool need_lists = topk == nullptr || (n_key_lists > 0 && key_lists.empty());
  if (need_lists) {
    // Lists not given (the worker's GPU finds them in the pipeline) are found here, by BLAS on float32:
    // 16-bit rows (the arena's: only float32 keys come from elsewhere) are widened for it, exactly, and
    // the copy is gone before the graph is built.
    std::vector<float> widened;
    const float* f32 = static_cast<const float*>(keys.base);
    if (keys.dtype != KvDtype::kF32) {
      RA_ASSERT(keys.base == arena_->data());
      const GraphBuildStepTimer timer(&GraphBuildSteps::widen);
      widened = arena_->widened(n, params.threads > 0 ? params.threads : omp_get_max_threads());
      f32 = widened.data();
    }
    const GraphBuildStepTimer timer(&GraphBuildSteps::lists);
    if (topk == nullptr) {
      topk_width = std::min<int64_t>(params.Kq, n);
      computed = exact_topk_ip(f32, n, dim, queries, nq, topk_width, params.threads);
      topk = computed.data();
    }
    // The keys' own lists: given (shared by a kv group's graphs) or computed here.
    if (n_key_lists > 0 && key_lists.empty()) {
      computed_key_lists = key_top_lists(f32, n, dim, params);
      key_lists = computed_key_lists;
    }
  }
  BuiltGraph g = build_graph(keys, n, queries, nq, topk, topk_width, params,
                             n_key_lists > 0 ? key_lists.data() : nullptr, n_key_lists, key_width, key_queries);
  const GraphBuildStepTimer timer(&GraphBuildSteps::finish);
  build_entry_ = g.entry;
  entries_ = spread_entries(n);
  // The build's norms are the merge's when it scored the index's own rows (not an int8 store's widened copy).
  const KeyRows own = rows();
  const bool same_rows = keys.base == own.base && keys.dtype == own.dtype;  // rows [0, n_) of one block
  adopt_graph(std::move(g.csr), same_rows ? std::move(g.norms) : std::vector<float>{});
  if (params.int8_navigation) {
    nav_ = std::make_unique<NavigationKeys>(rows(), n, max_nodes(), params.threads > 0 ? params.threads : omp_get_max_threads());
  }
}

int64_t GraphIndex::max_nodes() const { return n_ - arena_first_ + arena_->max_rows(); }

void GraphIndex::adopt_graph(GraphCsr csr, std::vector<float> norms) {
  threshold_ = staggered_threshold(params_.merge_threshold, params_.merge_stagger_key);
  // The merge's state: the build's BFS tree (every key is reachable after the build) and the norms,
  // with room for every key the index can take, so merges never reallocate them.
  const int64_t max_nodes = this->max_nodes();  // ids of every row the index can take
  RA_REQUIRE(max_nodes <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()),
             "graph index: {} keys with its appends exceed the 32-bit node id range", max_nodes);
  parents_ = spanning_parents(csr, build_entry_);
  parents_.reserve(static_cast<size_t>(max_nodes));
  if (static_cast<int64_t>(norms.size()) == n_) {  // the build's own
    norms_ = std::move(norms);
  } else {
    norms_.resize(static_cast<size_t>(n_));
    const KeyRows keys_of = rows();
    const int threads = params_.threads > 0 ? params_.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n_ > 4096)
    for (int64_t i = 0; i < n_; ++i) norms_[i] = keys_of.dot(static_cast<uint32_t>(i), static_cast<uint32_t>(i));
  }
  norms_.reserve(static_cast<size_t>(max_nodes));
  const int cap = params_.degree_cap > 0 ? params_.degree_cap : 2 * params_.M;
  graph_ = std::make_unique<GraphAdjacency>(std::move(csr), max_nodes, static_cast<size_t>(cap));
}

KeyRows GraphIndex::search_rows(const SearchParams& params) const {
  return nav_ && !params.exact_navigation ? nav_->rows() : rows();
}

const float* GraphIndex::search_queries(const SearchParams& params, const float* qs, int nq,
                                        SearchScratch& scratch) const {
  if (!nav_ || params.exact_navigation) return qs;
  scratch.scaled_queries.resize(static_cast<size_t>(nq * dim_));
  for (int h = 0; h < nq; ++h) nav_->scale_query(qs + h * dim_, scratch.scaled_queries.data() + h * dim_);
  return scratch.scaled_queries.data();
}

std::vector<uint32_t> GraphIndex::spread_entries(int64_t nodes) const {
  // Evenly spaced extra entries cover every part of the sequence: keys cluster by position and topic,
  // and a single entry can leave a beam stuck in the wrong cluster. Merged keys are covered too: they
  // are the newest tokens, which decode queries attend most (docs/retrieval.md).
  return retriever::spread_entries(build_entry_, params_.entry_samples, nodes);
}

GraphIndex::~GraphIndex() {
  {
    std::lock_guard lock(job_mutex_);
    closing_ = true;
  }
  // A queued job is dropped (its cancelled() ends it); a running one finishes its merge.
  if (params_.merge_pool != nullptr) params_.merge_pool->cancel(this);
  std::unique_lock lock(job_mutex_);
  job_done_.wait(lock, [&] { return !merge_scheduled_.load(); });
}

int64_t GraphIndex::size() const {
  std::shared_lock lock(mutex_);
  return n_ + taken_;
}

int64_t GraphIndex::graph_size() const {
  std::shared_lock lock(mutex_);
  return n_ + merged_;
}

int64_t GraphIndex::tail_size() const {
  std::shared_lock lock(mutex_);
  return taken_ - merged_;
}

std::string GraphIndex::coverage_error(int64_t rows) const {
  std::shared_lock lock(mutex_);
  const int64_t nodes = n_ + merged_, tail = taken_ - merged_;
  if (nodes + tail != rows || merged_ < 0 || tail < 0) {
    return fmt::format("the graph holds {} nodes and {} tail rows, but {} rows are stored", nodes, tail, rows);
  }
  if (graph_->nodes() != nodes) {
    return fmt::format("the adjacency has {} nodes, the graph counts {}", graph_->nodes(), nodes);
  }
  if (nav_ && nav_->size() != rows) {
    return fmt::format("the 8-bit copy codes {} rows of {}", nav_->size(), rows);
  }
  return {};
}

GraphCsr GraphIndex::adjacency() const {
  std::shared_lock lock(mutex_);
  return graph_->to_csr();
}

size_t GraphIndex::memory_bytes() const {
  std::shared_lock lock(mutex_);
  return graph_->bytes() + (own_arena_ ? own_arena_->bytes() : 0) + (nav_ ? nav_->bytes() : 0) +
         tail_queries_.capacity() * sizeof(float) + tail_answers_.capacity() * sizeof(uint32_t) +
         static_cast<size_t>(graph_->nodes()) * (sizeof(uint32_t) + sizeof(float));
}

int64_t GraphIndex::append(const float* key, const float* query, const int32_t* answer, int answer_width) {
  RA_REQUIRE(own_arena_, "graph index: append on a shared arena (its owner appends; use adopt_next_row)");
  RA_REQUIRE(n_ + own_arena_->size() < static_cast<int64_t>(std::numeric_limits<uint32_t>::max()),
             "graph index: the tail is full (32-bit ids)");
  RA_REQUIRE(own_arena_->size() < own_arena_->max_rows(),
             "graph index: {} keys appended already, its append_capacity", own_arena_->max_rows());
  check_answers(query, answer, answer_width);  // before the row is appended: a refused call changes nothing
  own_arena_->append(key);  // only this thread appends; searches and merges read the taken rows only
  return take_row(query, 1, answer, answer_width);
}

int64_t GraphIndex::adopt_next_row(const float* queries, int n_queries, const int32_t* answers, int answer_width) {
  RA_REQUIRE(!own_arena_, "graph index: adopt_next_row needs a shared arena (use append)");
  RA_REQUIRE(n_queries >= 1 && n_queries <= 255, "graph index: {} queries with one key (1 to 255)", n_queries);
  check_answers(queries, answers, answer_width);
  return take_row(queries, n_queries, answers, answer_width);
}

void GraphIndex::check_answers(const float* queries, const int32_t* answers, int answer_width) {
  RA_REQUIRE(answers == nullptr || (queries != nullptr && answer_width > 0),
             "graph index: decode answers need their queries and a width > 0 (got {})", answer_width);
}

int64_t GraphIndex::take_row(const float* query, int n_queries, const int32_t* answers, int answer_width) {
  int64_t id = 0;
  bool start_merge = false;
  {
    std::unique_lock lock(mutex_);
    RA_REQUIRE(taken_ < arena_->size() - arena_first_, "graph index: the arena has no new row ({} taken)", taken_);
    RA_REQUIRE(n_ + taken_ < static_cast<int64_t>(std::numeric_limits<uint32_t>::max()),
               "graph index: the tail is full (32-bit ids)");
    if (query != nullptr) {
      tail_queries_.insert(tail_queries_.end(), query, query + n_queries * dim_);
      // Each query's answer, best first: up to Kq of its ids that exist now (-1 and others skipped).
      const auto width = static_cast<size_t>(std::max(1, params_.Kq));
      const size_t first = tail_answers_.size();
      tail_answers_.resize(first + static_cast<size_t>(n_queries) * width, kNoAnswer);
      for (int h = 0; answers != nullptr && h < n_queries; ++h) {
        uint32_t* row = tail_answers_.data() + first + static_cast<size_t>(h) * width;
        const int32_t* given = answers + static_cast<ptrdiff_t>(h) * answer_width;
        size_t kept = 0;
        for (int i = 0; i < answer_width && kept < width; ++i) {
          if (given[i] >= 0 && given[i] < n_ + taken_) row[kept++] = static_cast<uint32_t>(given[i]);
        }
      }
    }
    tail_query_count_.push_back(query != nullptr ? static_cast<uint8_t>(n_queries) : uint8_t{0});
    id = n_ + taken_;
    if (nav_) nav_->append(rows(), static_cast<uint32_t>(id));
    ++taken_;
    start_merge = threshold_ > 0 && taken_ - merged_ >= threshold_;
  }
  if (!start_merge) return id;
  rethrow_merge_error();
  if (params_.merge_pool == nullptr) {
    try {
      merge_now();  // no pool: this append pays for the merge
    } catch (...) {
      keep_merge_error(std::current_exception());
      rethrow_merge_error();
    }
    return id;
  }
  if (!merge_scheduled_.load()) schedule_merge();  // the common case past the threshold: one load
  return id;
}

void GraphIndex::schedule_merge() {
  std::lock_guard lock(job_mutex_);
  if (merge_scheduled_.load() || closing_) return;
  MaintenancePool::Job job{[this] { run_merge_job(); },
                           [this] {  // dropped unstarted: nothing runs for this index any more
                             std::lock_guard done(job_mutex_);
                             merge_scheduled_.store(false);
                             job_done_.notify_all();
                           }};
  // Full or closed: the keys stay in the exact tail (still searched) and a later append tries again.
  if (params_.merge_pool->submit(this, std::move(job)) == MaintenancePool::Submitted::kQueued) {
    merge_scheduled_.store(true);
  }
}

void GraphIndex::run_merge_job() {
  bool ok = true;
  try {
    merge_now();
  } catch (...) {
    keep_merge_error(std::current_exception());
    ok = false;
  }
  // Keys appended during the merge found it scheduled and queued nothing: queue the next merge now if
  // they reach the threshold (at the back of the queue, so other indexes get their turn). The owner may
  // be destroyed as soon as merge_scheduled_ drops, so nothing touches it after that.
  const bool again = ok && tail_size() >= threshold_;
  std::lock_guard lock(job_mutex_);
  merge_scheduled_.store(false);
  if (again && !closing_) {
    MaintenancePool::Job job{[this] { run_merge_job(); },
                             [this] {
                               std::lock_guard done(job_mutex_);
                               merge_scheduled_.store(false);
                               job_done_.notify_all();
                             }};
    if (params_.merge_pool->submit(this, std::move(job)) == MaintenancePool::Submitted::kQueued) {
      merge_scheduled_.store(true);
    }
  }
  if (!merge_scheduled_.load()) job_done_.notify_all();
}

void GraphIndex::keep_merge_error(std::exception_ptr e) {
  std::lock_guard lock(error_mutex_);
  if (!merge_error_) merge_error_ = std::move(e);
  has_merge_error_.store(true);
}

void GraphIndex::rethrow_merge_error() {
  if (!has_merge_error_.load()) return;
  std::lock_guard lock(error_mutex_);
  has_merge_error_.store(false);
  if (merge_error_) std::rethrow_exception(std::exchange(merge_error_, nullptr));
}

void GraphIndex::wait_for_merge() {
  {
    std::unique_lock lock(job_mutex_);
    job_done_.wait(lock, [&] { return !merge_scheduled_.load(); });
  }
  rethrow_merge_error();
}

void GraphIndex::merge_tail() {
  wait_for_merge();
  int64_t left = tail_size();  // the tail as of this call, in batches
  while (left > 0) {
    const int64_t merged = merge_now();
    if (merged == 0) break;
    left -= merged;
  }
}

// A merge links each key to its fellow new keys by brute force, O(batch) per key: capping the batch
// keeps a merge's cost per key fixed when merges fall behind and the tail grows.
int64_t GraphIndex::merge_batch() const { return std::max<int64_t>(512, 2 * int64_t{threshold_}); }

int64_t GraphIndex::merge_now() {
  std::lock_guard merge_lock(merge_mutex_);
  // Snapshot of the batch's extent and a copy of its queries. The tail's keys are read in place: arena
  // rows never move, and appends only add rows. The graph is read without the lock: only merges
  // (serialised by merge_mutex_) write it.
  int64_t taken = 0, m_queries = 0;
  std::vector<float> fresh_queries;     // [queries given with the batch's keys][dim_]
  std::vector<uint32_t> fresh_answers;  // [the same queries][answer_width]
  const int answer_width = std::max(1, params_.Kq);
  {
    std::shared_lock lock(mutex_);
    taken = std::min(taken_, merged_ + merge_batch());
    for (int64_t i = 0; i < taken - merged_; ++i) m_queries += tail_query_count_[i];
    fresh_queries.assign(tail_queries_.begin(), tail_queries_.begin() + static_cast<std::ptrdiff_t>(m_queries * dim_));
    fresh_answers.assign(tail_answers_.begin(),
                         tail_answers_.begin() + static_cast<std::ptrdiff_t>(m_queries * answer_width));
  }
  const int64_t old_nodes = graph_->nodes();
  const int64_t m = n_ + taken - old_nodes;
  if (m == 0) return 0;
  const KeyRows keys = rows();
  norms_.resize(static_cast<size_t>(old_nodes));  // a failed merge may have left entries past the graph
  for (int64_t v = old_nodes; v < old_nodes + m; ++v) {
    norms_.push_back(keys.dot(static_cast<uint32_t>(v), static_cast<uint32_t>(v)));
  }
  parents_.resize(static_cast<size_t>(old_nodes));
  parents_.resize(static_cast<size_t>(old_nodes + m), kNoParent);
  GraphDelta delta;
  {
    delta = insert_keys(keys, MergeGraph{*graph_, entries_, parents_, norms_}, m, params_,
                        MergeQueries{fresh_queries, fresh_answers, answer_width}, thread_search_scratch());
  }
  // Room for the new slots now, so the apply below allocates nothing under the lock.
  size_t need = 0;
  for (const auto& [v, list] : delta.changed) need += graph_->slot_need(v, list.size());
  for (const auto& list : delta.added) need += graph_->slot_need(graph_->nodes(), list.size());
  graph_->reserve(need);
  std::vector<uint32_t> entries = spread_entries(old_nodes + m);
  {
    std::unique_lock lock(mutex_);  // the apply: searches wait at most for these copies
    for (const auto& [v, list] : delta.changed) graph_->set(v, list);
    for (const auto& list : delta.added) graph_->add(list);
    entries_.swap(entries);
    merged_ = taken;
    tail_queries_.erase(tail_queries_.begin(), tail_queries_.begin() + static_cast<std::ptrdiff_t>(m_queries * dim_));
    tail_answers_.erase(tail_answers_.begin(),
                        tail_answers_.begin() + static_cast<std::ptrdiff_t>(m_queries * answer_width));
    tail_query_count_.erase(tail_query_count_.begin(), tail_query_count_.begin() + static_cast<std::ptrdiff_t>(m));
    ++merge_stats_.merges;
    merge_stats_.keys += m;
    merge_stats_.distance_computations += delta.distance_computations;
    merge_stats_.lists_rewritten += static_cast<int64_t>(delta.changed.size());
  }
  return m;
}

GraphIndex::MergeStats GraphIndex::merge_stats() const {
  std::shared_lock lock(mutex_);
  return merge_stats_;
}

std::span<const uint32_t> GraphIndex::entries_with_seeds(const SearchParams& params, SearchScratch& scratch) const {
  if (params.n_seeds <= 0) return entries_;
  RA_REQUIRE(params.seeds != nullptr, "graph index: n_seeds {} with no seeds", params.n_seeds);
  auto& with_seeds = scratch.entries;
  with_seeds.assign(entries_.begin(), entries_.end());
  const int64_t nodes = graph_->nodes();
  for (int i = 0; i < params.n_seeds; ++i) {
    if (params.seeds[i] >= 0 && params.seeds[i] < nodes) with_seeds.push_back(static_cast<uint32_t>(params.seeds[i]));
  }
  return with_seeds;
}

int GraphIndex::resolve_ef(const SearchParams& params) const {
  if (params.ef > 0) return params.ef;
  return params_.default_ef > 0 ? params_.default_ef : 2 * params.k;
}

namespace {

// Writes the best min(k, merged.size()) of merged to ids, scores (best first); returns how many.
int take_best(std::vector<Scored>& merged, int k, int64_t* ids, float* scores) {
  const size_t out = std::min<size_t>(merged.size(), static_cast<size_t>(k));
  std::partial_sort(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(out), merged.end(), better);
  for (size_t i = 0; i < out; ++i) {
    ids[i] = merged[i].id;
    scores[i] = merged[i].score;
  }
  return static_cast<int>(out);
}

}  // namespace

void GraphIndex::with_tail(const KeyRows& keys, const float* q, std::span<const Scored> graph_best, int k,
                           std::vector<Scored>& merged) const {
  merged.assign(graph_best.begin(), graph_best.begin() + std::min<size_t>(graph_best.size(), k));
  const int64_t end = n_ + taken_;
  for (int64_t id = n_ + merged_; id < end; ++id) {
    if (id + 1 < end) __builtin_prefetch(keys.row_data(static_cast<uint32_t>(id + 1)), 0, 3);
    merged.push_back({keys.score(q, static_cast<uint32_t>(id)), static_cast<uint32_t>(id)});
  }
}

int GraphIndex::search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
                       SearchStats* stats) const {
  RA_REQUIRE(params.k >= 0, "graph index: k must be non-negative (got {})", params.k);
  if (params.k == 0) return 0;
  const int k = params.k;
  SearchScratch* scratch = &thread_search_scratch();
  auto& merged = scratch->merged;
  // The shared lock spans graph and tail, so a concurrent merge's swap cannot move a key between them
  // in the middle of this search (it would be counted twice or missed).
  std::shared_lock lock(mutex_);
  const KeyRows keys = search_rows(params);
  q = search_queries(params, q, 1, *scratch);
  beam_search(keys, *graph_, entries_with_seeds(params, *scratch), q, resolve_ef(params), k, *scratch, stats,
              params.expand);
  with_tail(keys, q, scratch->pool, k, merged);
  const int64_t tail_rows = taken_ - merged_;
  lock.unlock();
  if (stats) stats->distance_computations += tail_rows;
  return take_best(merged, k, ids, scores);
}

void GraphIndex::search_group(const float* qs, int nq, const SearchParams& params, int64_t* ids, float* scores,
                              int* found, SearchStats* stats) const {
  RA_REQUIRE(params.k >= 0 && nq >= 1, "graph index: grouped search of {} queries with k = {}", nq, params.k);
  const int k = params.k;
  if (k == 0) {
    std::fill_n(found, nq, 0);
    return;
  }
  SearchScratch* scratch = &thread_search_scratch();
  auto& merged = scratch->merged;
  std::shared_lock lock(mutex_);  // graph and tail together, as in search
  const KeyRows keys = search_rows(params);
  qs = search_queries(params, qs, nq, *scratch);
  beam_search_group(keys, *graph_, entries_with_seeds(params, *scratch), qs, nq, resolve_ef(params), k, *scratch,
                    stats);
  for (int h = 0; h < nq; ++h) {
    with_tail(keys, qs + h * dim_, scratch->group.pools[static_cast<size_t>(h)], k, merged);
    found[h] = take_best(merged, k, ids + static_cast<int64_t>(h) * k, scores + static_cast<int64_t>(h) * k);
  }
  const int64_t tail_rows = taken_ - merged_;
  lock.unlock();
  if (stats) stats->distance_computations += tail_rows * nq;
}

void GraphIndex::search_interleaved(const float* qs, int nq, const SearchParams* params, int64_t* ids,
                                    float* scores, int* found, SearchStats* stats) const {
  RA_REQUIRE(nq >= 1 && nq <= kThreadScratchSlots, "graph index: {} interleaved searches (1 to {})", nq,
             kThreadScratchSlots);
  const int k = params[0].k;
  const int ef = resolve_ef(params[0]);
  for (int h = 1; h < nq; ++h) {
    RA_REQUIRE(params[h].k == k && resolve_ef(params[h]) == ef &&
                   params[h].exact_navigation == params[0].exact_navigation && params[h].expand == params[0].expand,
               "graph index: interleaved searches need one k, ef and navigation (query {}: k {} ef {}, query 0: k {} "
               "ef {})", h, params[h].k, resolve_ef(params[h]), k, ef);
  }
  RA_REQUIRE(k >= 0, "graph index: k must be non-negative (got {})", k);
  if (k == 0) {
    std::fill_n(found, nq, 0);
    return;
  }
  SearchScratch* scratch[kThreadScratchSlots];
  std::span<const uint32_t> entries[kThreadScratchSlots];
  std::shared_lock lock(mutex_);  // graph and tail together, as in search
  for (int h = 0; h < nq; ++h) {
    scratch[h] = &thread_search_scratch(h);
    entries[h] = entries_with_seeds(params[h], *scratch[h]);
  }
  const KeyRows keys = search_rows(params[0]);
  qs = search_queries(params[0], qs, nq, *scratch[0]);
  beam_search_interleaved(keys, *graph_, std::span(entries, static_cast<size_t>(nq)), qs, nq, ef, k,
                          std::span(scratch, static_cast<size_t>(nq)), found, stats, params[0].expand);
  for (int h = 0; h < nq; ++h) {
    auto& merged = scratch[h]->merged;
    with_tail(keys, qs + h * dim_, scratch[h]->pool, k, merged);
    found[h] = take_best(merged, k, ids + static_cast<int64_t>(h) * k, scores + static_cast<int64_t>(h) * k);
  }
  const int64_t tail_rows = taken_ - merged_;
  lock.unlock();
  if (stats) stats->distance_computations += tail_rows * nq;
}

}  // namespace ra::retriever
