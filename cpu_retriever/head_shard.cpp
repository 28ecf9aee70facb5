#include "cpu_retriever/head_shard.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "common/error.h"
#include "cpu_retriever/flat_index.h"
#include "cpu_retriever/graph_build.h"
#include "cpu_retriever/maintenance_pool.h"
#ifdef RA_HAVE_FAISS
#include "cpu_retriever/faiss_indexes.h"
#endif

namespace ra::retriever {
namespace {

int ivf_lists_for(int64_t n, int requested) {
  if (requested > 0) return static_cast<int>(std::min<int64_t>(requested, n));
  const auto by_sqrt = static_cast<int64_t>(std::lround(4.0 * std::sqrt(static_cast<double>(n))));
  return static_cast<int>(std::max<int64_t>(1, std::min(by_sqrt, n / 39)));  // FAISS wants >= 39 per list
}

// Graph shards made so far in this process: the stagger key of a shard that was given none.
std::atomic<int64_t> graph_shards_made{0};

// The rows a shard's store makes room for, after checking the sizes.
int64_t store_rows(int64_t n, int group_size, const ShardIndexParams& params) {
  RA_REQUIRE(n >= 0 && group_size >= 1, "head shard: bad sizes (n = {}, group = {})", n, group_size);
  RA_REQUIRE(params.append_capacity >= 0, "head shard: append_capacity must be >= 0 (got {})",
             params.append_capacity);
  return n + params.append_capacity;
}

}  // namespace

HeadShard::HeadShard(Empty, int64_t head_dim, KvDtypes dtypes, int64_t n, int group_size,
                     const ShardIndexParams& params)
    : head_dim_(head_dim),
      params_(params),
      n_(n),
      store_(head_dim, dtypes, store_rows(n, group_size, params)),
      group_size_(group_size) {}

int64_t HeadShard::init_graphs(const ShardIndexParams& params, GraphBuildParams& gp) {
  graph_tail_ = true;
  // Merges on the process's pool, each graph's threshold staggered by its own key.
  gp = params.graph;
  if (gp.merge_threshold > 0 && gp.merge_pool == nullptr) {
    gp.merge_pool = params.maintenance != nullptr ? params.maintenance : &process_maintenance_pool();
  }
  for (int m = 0; m < group_size_; ++m) answers_.emplace_back(params.warm_history);
  if (gp.merge_threshold > 0) last_answers_.resize(static_cast<size_t>(group_size_));
  if (params.graph_per_kv_head) {
    graph_per_kv_head_ = true;
    merge_one_query_ = params.merge_one_query;
  }
  return params.stagger_key >= 0 ? params.stagger_key : graph_shards_made.fetch_add(1);
}

HeadShard::HeadShard(int64_t head_dim, KvDtypes dtypes, KvRows keys, KvRows values, int64_t n,
                     int group_size, const float* train_queries, int64_t n_train, const ShardIndexParams& params,
                     const int32_t* train_lists, int list_width, KeyQueries key_queries)
    : HeadShard(Empty{}, head_dim, dtypes, n, group_size, params) {
  store_.append(keys, values, n);
  if (n == 0) return;
  const RowArena& rows = *store_.keys();
  switch (params.kind) {
    case IndexKind::kFlat:
      indexes_.push_back(std::make_unique<FlatIndex>(rows.data(), rows.dtype(), n, head_dim));
      break;
    case IndexKind::kGraph: {
      RA_REQUIRE(n_train > 0 && train_queries != nullptr, "graph index: needs training queries");
      GraphBuildParams gp;
      const int64_t shard_key = init_graphs(params, gp);
      // The lists given ([group][n_train][width]), widened to the graph's int64 ids.
      const int64_t width = train_lists != nullptr ? list_width : 0;
      std::vector<int64_t> lists(train_lists, train_lists + (width > 0 ? group_size * n_train * width : 0));
      const int64_t* member_lists = width > 0 ? lists.data() : nullptr;
      if (params.graph_per_kv_head) {
        // One graph for the group, trained by all its heads' queries ([group][n_train] rows, in order).
        gp.merge_stagger_key = shard_key;
        indexes_.push_back(std::make_unique<GraphIndex>(store_.keys(), n, train_queries, group_size * n_train, gp,
                                                        member_lists, width, std::span<const int64_t>{},
                                                        key_queries));
        break;
      }
      // The keys' own top lists depend on the keys only: one brute force for the whole group.
      std::vector<int64_t> key_lists;
      if (group_size > 1 && key_list_count(n, params.graph) > 0) {
        key_lists = key_top_lists(rows.widened(n).data(), n, head_dim, params.graph);
      }
      // Each member's graph scores the store's rows in place: the keys are held once for the group.
      for (int m = 0; m < group_size; ++m) {
        gp.merge_stagger_key = shard_key * group_size + m;
        indexes_.push_back(std::make_unique<GraphIndex>(store_.keys(), n, train_queries + m * n_train * head_dim,
                                                        n_train, gp, member_lists ? member_lists + m * n_train * width : nullptr,
                                                        width, key_lists));
      }
      break;
    }
    case IndexKind::kIvf:
    case IndexKind::kHnsw: {
#ifdef RA_HAVE_FAISS
      // FAISS takes float32 and keeps a copy of its own: hand it the stored keys, widened.
      const std::vector<float> widened = rows.widened(n);
      if (params.kind == IndexKind::kIvf) {
        indexes_.push_back(make_ivf_flat_index(widened.data(), n, head_dim, ivf_lists_for(n, params.ivf_nlist),
                                               params.seed));
      } else {
        indexes_.push_back(make_hnsw_flat_index(widened.data(), n, head_dim, params.hnsw_M,
                                                params.hnsw_ef_construction));
      }
      break;
#else
      raise("this build has no FAISS: the ivf and hnsw modes are unavailable (install libfaiss-dev and rebuild)");
#endif
    }
  }
  if (!params.scan_fractions.empty() && params.kind != IndexKind::kFlat) fit_budgets(params, train_queries, n_train);
}

void HeadShard::fit_budgets(const ShardIndexParams& params, const float* train_queries, int64_t n_train) {
  RA_REQUIRE(n_train > 0 && train_queries != nullptr,
             "head shard: scan budgets are fitted on training queries, and the build brought none");
  const ScanKnob knob = params.kind == IndexKind::kIvf ? ScanKnob::kNprobe : ScanKnob::kEf;
  constexpr int64_t kQueries = 32;
  const bool per_member = indexes_.size() == static_cast<size_t>(group_size_) && group_size_ > 1;
  // One index for the group: fitted on the latest queries of every member.
  const int64_t each = std::min(n_train, (kQueries + group_size_ - 1) / group_size_);
  std::vector<float> group_queries;
  if (!per_member) {
    group_queries.resize(static_cast<size_t>(group_size_ * each * head_dim_));
    for (int m = 0; m < group_size_; ++m) {
      const float* last = train_queries + (m * n_train + n_train - each) * head_dim_;
      std::copy_n(last, each * head_dim_, group_queries.data() + m * each * head_dim_);
    }
  }
  for (const double fraction : params.scan_fractions) {
    std::vector<ScanBudget>& per_index = budgets_.emplace_back();
    if (!per_member) {
      per_index.push_back(fit_scan_budget(*indexes_.front(), knob, group_queries.data(), group_size_ * each,
                                          params.scan_top_k, fraction, group_size_ * each));
      continue;
    }
    for (int m = 0; m < group_size_; ++m) {  // a graph per member, fitted on its own queries
      per_index.push_back(fit_scan_budget(*indexes_[static_cast<size_t>(m)], knob,
                                          train_queries + m * n_train * head_dim_, n_train, params.scan_top_k,
                                          fraction, kQueries));
    }
  }
}

SearchParams HeadShard::budgeted(size_t slot, const SearchParams& params) const {
  if (budgets_.empty()) return params;
  RA_REQUIRE(params.scan_budget >= 0 && static_cast<size_t>(params.scan_budget) < budgets_.size(),
             "head shard: scan budget {} of {}", params.scan_budget, budgets_.size());
  SearchParams p = params;
  const ScanBudget& b = budgets_[static_cast<size_t>(params.scan_budget)][slot];
  if (b.ef > 0) p.ef = b.ef;
  if (b.nprobe > 0) p.nprobe = b.nprobe;
  return p;
}

void HeadShard::audit(const float* q, const int64_t* ids, int64_t n, const SearchParams& params, ShardScratch& s,
                      SearchStats* stats) const {
  if (!params.audit_recall || stats == nullptr || params.k <= 0) return;
  const auto k = static_cast<size_t>(params.k);
  s.audit_ids.resize(k);
  s.audit_scores.resize(k);
  const RowArena& rows = *store_.keys();
  const int exact = exact_top_k(q, rows.row_data(0), rows.dtype(), store_.size(), head_dim_, params.k,
                                s.audit_ids.data(), s.audit_scores.data());
  const auto end = s.audit_ids.begin() + exact;
  std::sort(s.audit_ids.begin(), end);
  for (int64_t i = 0; i < n; ++i) stats->recall_hits += std::binary_search(s.audit_ids.begin(), end, ids[i]) ? 1 : 0;
  stats->recall_wanted += exact;
}

void HeadShard::append(const float* key, const float* value, const float* member_queries,
                       const int32_t* member_answers, int answer_width) {
  RA_REQUIRE(store_.size() < store_.keys()->max_rows(),
             "head shard: {} evicted tokens fill it (ShardIndexParams::append_capacity)",
             store_.keys()->max_rows() - n_);
  store_.append(key, value, 1);
  if (!graph_tail_) return;  // rows [n, size()) are the flat tail search_attend scans
  // Each graph takes the row into its own tail and merges it into its adjacency in the background
  // (graph_index.h). Ids continue n, n + 1, ... like the store's rows.
  if (graph_per_kv_head_) {  // the group's graph merges the token by every member's query, or one's
    auto* graph = static_cast<GraphIndex*>(indexes_.front().get());
    const int32_t* answers = member_queries ? member_answers : nullptr;
    if (merge_one_query_ && member_queries != nullptr) {
      const int64_t m = (store_.size() - 1) % group_size_;  // the row just appended
      graph->adopt_next_row(member_queries + m * head_dim_, 1, answers ? answers + m * answer_width : nullptr,
                            answer_width);
    } else {
      graph->adopt_next_row(member_queries, group_size_, answers, answer_width);
    }
    return;
  }
  for (size_t m = 0; m < indexes_.size(); ++m) {
    const float* q = member_queries ? member_queries + static_cast<int64_t>(m) * head_dim_ : nullptr;
    const int32_t* a = q && member_answers ? member_answers + static_cast<int64_t>(m) * answer_width : nullptr;
    static_cast<GraphIndex*>(indexes_[m].get())->adopt_next_row(q, 1, a, answer_width);
  }
}

std::string HeadShard::coverage_error() const {
  const int64_t rows = store_.size();
  if (n_ > rows) return fmt::format("the indexes were built on {} rows but the store holds {}", n_, rows);
  for (size_t i = 0; i < indexes_.size(); ++i) {
    const KeyIndex& index = *indexes_[i];
    if (graph_tail_) {
      std::string error = static_cast<const GraphIndex&>(index).coverage_error(rows);
      if (!error.empty()) return fmt::format("graph {}: {}", i, error);
    } else if (index.size() != n_) {
      return fmt::format("index {} ({}) holds {} keys; {} were built (the {} rows past them are the flat tail)", i,
                         index.name(), index.size(), n_, rows - n_);
    }
  }
  return {};
}

HeadShard::TailCounts HeadShard::tail_counts() const {
  TailCounts c;
  if (!graph_tail_) return c;
  for (const auto& index : indexes_) {
    const auto* graph = static_cast<const GraphIndex*>(index.get());
    c.merged += graph->graph_size() - n_;
    c.tail += graph->tail_size();
  }
  return c;
}

std::span<const int64_t> HeadShard::last_answer(int member) const {
  RA_REQUIRE(member >= 0 && member < group_size_, "head shard: member {} of a group of {}", member, group_size_);
  if (last_answers_.empty()) return {};
  return last_answers_[static_cast<size_t>(member)];
}

bool HeadShard::members_one_by_one(int first, int count, const float* qs, const SearchParams& params, float scale,
                                   ShardScratch& s, float* o, float* lse, SearchStats* stats) {
  RA_REQUIRE(first >= 0 && count >= 1 && first + count <= group_size_,
             "head shard: members [{}, {}) of a group of {}", first, first + count, group_size_);
  if (graph_per_kv_head_ && !indexes_.empty() && count > 1) {
    const auto k = static_cast<size_t>(std::max(0, params.k));
    s.group_ids.resize(k * count);
    s.group_scores.resize(k * count);
    s.group_found.resize(static_cast<size_t>(count));
    if (s.weights.size() < k) s.weights.resize(k);
    return false;
  }
  for (int i = 0; i < count; ++i) {
    lse[i] = search_attend(first + i, qs + i * head_dim_, params, scale, s, o + i * head_dim_, stats);
  }
  return true;
}

void HeadShard::attend_members(int first, int count, const float* qs, const SearchParams& params, float scale,
                               ShardScratch& s, float* o, float* lse, SearchStats* stats) {
  const auto k = static_cast<size_t>(std::max(0, params.k));
  for (int i = 0; i < count; ++i) {
    const std::span<const int64_t> ids(s.group_ids.data() + i * k, static_cast<size_t>(s.group_found[i]));
    if (!answers_.empty()) answers_[static_cast<size_t>(first + i)].record(ids, params.k);
    if (!last_answers_.empty()) last_answers_[static_cast<size_t>(first + i)].assign(ids.begin(), ids.end());
    audit(qs + i * head_dim_, ids.data(), static_cast<int64_t>(ids.size()), params, s, stats);
    lse[i] = store_.attend(qs + i * head_dim_, ids, scale, s.weights, o + i * head_dim_);
  }
}

void HeadShard::search_attend_group(int first, int count, const float* qs, const SearchParams& params, float scale,
                                    ShardScratch& s, float* o, float* lse, SearchStats* stats) {
  if (members_one_by_one(first, count, qs, params, scale, s, o, lse, stats)) return;
  SearchParams seeded = budgeted(0, params);
  if (!answers_.empty() && answers_.front().depth() > 0) {  // every member's recent answers seed the traversal
    s.group_seeds.clear();
    for (int i = 0; i < count; ++i) {
      SearchParams one;
      answers_[static_cast<size_t>(first + i)].seed(one);
      s.group_seeds.insert(s.group_seeds.end(), one.seeds, one.seeds + one.n_seeds);
    }
    seeded.seeds = s.group_seeds.data();
    seeded.n_seeds = static_cast<int>(s.group_seeds.size());
  }
  const auto* graph = static_cast<const GraphIndex*>(indexes_.front().get());
  graph->search_group(qs, count, seeded, s.group_ids.data(), s.group_scores.data(), s.group_found.data(), stats);
  attend_members(first, count, qs, params, scale, s, o, lse, stats);
}

const KeyIndex* HeadShard::index_for(int member) const {
  if (indexes_.empty()) return nullptr;  // a group's one graph (per kv head) or its key-only index: size 1
  return indexes_.size() == 1 ? indexes_[0].get() : indexes_[static_cast<size_t>(member)].get();
}

void HeadShard::search_attend_interleaved(int first, int count, const float* qs, const SearchParams& params,
                                          float scale, ShardScratch& s, float* o, float* lse, SearchStats* stats) {
  if (members_one_by_one(first, count, qs, params, scale, s, o, lse, stats)) return;
  s.member_params.assign(static_cast<size_t>(count), budgeted(0, params));
  if (!answers_.empty()) {
    for (int i = 0; i < count; ++i) answers_[static_cast<size_t>(first + i)].seed(s.member_params[i]);
  }
  const auto* graph = static_cast<const GraphIndex*>(indexes_.front().get());
  graph->search_interleaved(qs, count, s.member_params.data(), s.group_ids.data(), s.group_scores.data(),
                            s.group_found.data(), stats);
  attend_members(first, count, qs, params, scale, s, o, lse, stats);
}

float HeadShard::search_attend(int member, const float* q, const SearchParams& params, float scale,
                               ShardScratch& s, float* o, SearchStats* stats) {
  const auto k = static_cast<size_t>(std::max(0, params.k));
  if (s.ids.size() < k) {
    s.ids.resize(k);
    s.scores.resize(k);
    s.tail_ids.resize(k);
    s.tail_scores.resize(k);
    s.merged_ids.resize(k);
    s.weights.resize(k);
  }
  int found = 0;
  if (const KeyIndex* index = index_for(member)) {
    const SearchParams tuned = budgeted(index_slot(member), params);
    if (answers_.empty()) {
      found = index->search(q, tuned, s.ids.data(), s.scores.data(), stats);
    } else {
      AnswerHistory& answers = answers_[static_cast<size_t>(member)];
      SearchParams seeded = tuned;
      answers.seed(seeded);
      found = index->search(q, seeded, s.ids.data(), s.scores.data(), stats);
      answers.record(std::span<const int64_t>(s.ids.data(), static_cast<size_t>(found)), params.k);
    }
  }
  const int64_t tail_rows = graph_tail_ ? 0 : store_.size() - n_;
  int tail_found = 0;
  if (tail_rows > 0 && k > 0) {
    const RowArena& rows = *store_.keys();
    tail_found = exact_top_k(q, rows.row_data(n_), rows.dtype(), tail_rows, head_dim_, static_cast<int>(k),
                             s.tail_ids.data(), s.tail_scores.data());
    if (stats) stats->distance_computations += tail_rows;
  }
  // Merge the two best-first lists into the overall top k (tail ids are offset to their rows).
  size_t a = 0, b = 0, m = 0;
  while (m < k && (a < static_cast<size_t>(found) || b < static_cast<size_t>(tail_found))) {
    const bool take_tail = a == static_cast<size_t>(found) ||
                           (b < static_cast<size_t>(tail_found) && s.tail_scores[b] > s.scores[a]);
    s.merged_ids[m++] = take_tail ? n_ + s.tail_ids[b++] : s.ids[a++];
  }
  if (!last_answers_.empty()) {
    last_answers_[static_cast<size_t>(member)].assign(s.merged_ids.begin(), s.merged_ids.begin() + static_cast<std::ptrdiff_t>(m));
  }
  audit(q, s.merged_ids.data(), static_cast<int64_t>(m), params, s, stats);
  return store_.attend(q, std::span<const int64_t>(s.merged_ids.data(), m), scale, s.weights, o);
}

size_t HeadShard::kv_bytes() const { return store_.memory_bytes(); }

size_t HeadShard::memory_bytes() const {
  size_t bytes = store_.memory_bytes();
  for (const auto& index : indexes_) bytes += index->memory_bytes();
  return bytes;
}

}  // namespace ra::retriever
