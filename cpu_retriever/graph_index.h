#pragma once
// The attention-aware graph index of one head (DESIGN §6, the RoarGraph projection), plus a flat tail
// for keys appended after the build (new tokens during decoding) and its merge into the graph.
//
// Keys: [n][dim], component j of key i at row i, element j. The index never copies them. Either it
// references the caller's float32 key matrix (which must outlive the index and stay unchanged) and
// keeps the keys appended later in a RowArena of its own (row i is id n + i); or it scores the rows of
// an arena it shares with their owner, in that arena's dtype (HeadShard: the KV store's bf16 keys,
// which attention reads too; row i is id i). An appended key first sits in the flat tail, which every
// search scans exactly and merges with the graph's results. Once the tail holds the index's merge
// threshold of keys, a merge inserts them into the graph (graph_merge.h): on a MaintenancePool thread
// when params.merge_pool is set (appends only enqueue it), else at the append that crosses the
// threshold. A merge computes its changes from the graph as it stands, then applies them (new nodes'
// lists, the touched nodes' new lists) under a short exclusive lock, so it costs O(new keys), not
// O(context) (graph_adjacency.h). At every moment a key is either in the graph or in the tail, never
// both, never neither, and its id never changes; searches run concurrently with merges.
//
// Staggering: indexes that reach their thresholds on the same token would all merge at once. With
// params.merge_stagger_key >= 0 (e.g. layer * heads + head) the index's threshold T' is
// T / 2 + SplitMix64(key).below(T) for T = merge_threshold (T' in [T/2, 3T/2), mean about T), fixed
// for the index's life: different keys merge on different tokens and at different periods. An index
// also never has more than one merge queued or running (the next one is queued once it ends), and a
// merge takes at most max(512, 2 T') keys, so its cost per key stays fixed when merges fall behind.

#include "cpu_retriever/graph_search.h"
#include "cpu_retriever/key_index.h"
#include "cpu_retriever/navigation_keys.h"
#include "cpu_retriever/row_arena.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

namespace ra::retriever {

class GraphAdjacency;
class MaintenancePool;
class ShardReader;
class ShardWriter;

// How a kept neighbour s occludes a candidate c of pivot p during pruning (see graph_build.cpp).
enum class Occlusion { kInnerProduct, kL2 };

// Each key's best training queries by inner product, best first: ids [n][width] int32 of training
// query rows (out-of-range ids are ignored), as the worker's GPU finds them with the training lists
// (GraphBuildParams::connect_query_lists uses the first min(width, connect_query_lists) of a key's).
struct KeyQueries {
  const int32_t* ids = nullptr;
  int width = 0;
  explicit operator bool() const { return ids != nullptr && width > 0; }
};

struct GraphBuildParams {
  int M = 32;                  // max out-degree after the projection and re-pruning
  int Kq = 100;                // neighbours per training query (when top-k lists are computed here)
  int ef_construction = 64;    // connectivity: beam size of each key's self-search
  int degree_cap = 0;          // max out-degree once connectivity edges are added; 0 = 2 * M
  int max_train_queries = 0;   // 0 = use every training query; else a seeded subsample of this many
  uint64_t seed = 0;           // drives the subsample; the build is otherwise deterministic
  int threads = 0;             // build threads; 0 = the OpenMP default. Output does not depend on it
  Occlusion occlusion = Occlusion::kL2;  // pruning geometry between keys (L2: measured better, docs/retrieval.md)
  bool fill_pruned = false;    // fill a pruned list back up to its limit with occluded candidates
  int default_ef = 0;          // beam size when SearchParams::ef == 0; 0 = 2 * k
  int entry_samples = 32;      // extra search entries: keys spread evenly over [0, n), scored per search
  // Projection pivots per training list: its best key links to the whole list (RoarGraph, pivots = 1),
  // and each of its next best pivots - 1 keys links to the list's first pivot_span keys (0 = the whole
  // list). 8 / 32 measured better than 1 on the needle model (docs/retrieval.md).
  int pivots = 8;
  int pivot_span = 32;
  // Every key_lists_stride-th key also trains as a query: its exact top-Kq list by inner product is
  // projected like a training query's (0 = off). Decode queries can drift from the prefill queries'
  // distribution; keys that no prefill query ranked then still have edges to their own neighbourhood.
  // On the 64K needle dump, 26% of one head's test answers lay in no prefill query's top-100, and this
  // took its recall at 6% scanned from 0.48 to 0.95 (docs/retrieval.md). Costs a second brute force.
  int key_lists_stride = 1;
  // After the connectivity edges, re-prune every list by the occlusion rule (up to the degree cap).
  bool final_prune = true;
  // Connectivity (step 3) searches for every key's own neighbours: most of a build once the training
  // lists come from the GPU (66% at 64K, docs/perf.md). >= 0: only keys with at most this many in-edges
  // after the projection search (0, the default: the keys no training list reached); the reachability
  // repair still links every key. -1: every key (RoarGraph's pass). 0 against -1: the same recall at
  // every beam on the 16K needle dump, 22% fewer rows per search and a 4x shorter build tail at 128K
  // (docs/perf.md, thirteenth round).
  int connect_max_in_degree = 0;
  // > 0: a connecting key does not search; its candidates are the top lists of the connect_query_lists
  // training queries that score it best (exact: one GEMM here, or KeyQueries from the GPU), pruned. Where the training queries are sparse
  // among the keys (2,048 per head at 128K), a connecting key's search on the projected graph finds poor
  // neighbours; on the 16K needle dump with 1.6% of positions training (128K's density), recall 0.90 costs
  // 9.8% of keys scanned with 1, and 0 (search) never reaches it (0.87 at 14.4%); at 13% density both are equal
  // (docs/retrieval.md, "Connecting keys from the training lists"). 0: search (ef_construction).
  int connect_query_lists = 1;
  // Query-guided repair after the build: every repair_stride-th training query searches the graph with
  // beam repair_ef; each of its exact top-repair_k keys the search missed gets an edge from the found key
  // nearest to it (up to degree_cap + repair_extra). 0 = off.
  int repair_ef = 0;
  int repair_k = 100;
  int repair_stride = 1;
  int repair_extra = 16;
  int merge_threshold = 0;     // tail keys that start a merge into the graph; 0 = never (see the top)
  int64_t merge_stagger_key = -1;  // >= 0: jitters the threshold by this key (see the top); < 0: exact
  MaintenancePool* merge_pool = nullptr;  // where merges run (not owned); null: at the crossing append
  // Beam of the search that finds a merged token's query list (step 4 of insert_keys); 0 = max(2 Kq,
  // ef_construction). Only for queries that come without their decode answer (see append).
  int merge_query_ef = 0;
  // A query that comes with its decode answer takes its list from that answer plus the last
  // merge_recent_keys graph keys before the merged ones, all scored exactly: the keys the query saw in
  // the GPU's window at its step joined the graph since. The retriever sets it to the window.
  int merge_recent_keys = 512;
  // Keys the index's own arena can take after the build (address space only, 512 MiB at dim 128).
  int64_t append_capacity = int64_t{1} << 20;
  // Searches walk an 8-bit copy of the keys (navigation_keys.h: half a bf16 row's cache lines), and
  // their scores are those of the copy; builds and merges use the exact keys. Costs dim bytes per key.
  // Refused over int8 KV rows (KvDtype::kQ8): those are walked in place, with attention's scores.
  bool int8_navigation = false;
};

class GraphIndex final : public KeyIndex {
 public:
  // keys: [n][dim] float32, referenced. train_queries: [nq][dim] float32, read during the build only.
  // train_topk: optional [nq][topk_width] int64, each training query's exact top keys, best first
  // (e.g. from the GPU); entries < 0 or >= n are ignored. When null, the top-Kq lists are computed
  // here by a multi-threaded brute force. Keys appended later go to an arena of the index's own, of
  // params.append_capacity rows (append). Throws ra::Error on bad arguments.
  GraphIndex(const float* keys, int64_t n, int64_t dim, const float* train_queries, int64_t nq,
             const GraphBuildParams& params, const int64_t* train_topk = nullptr, int64_t topk_width = 0);

  // The same over rows [0, n) of an arena shared with its owner (n <= rows->size()), scored in the
  // arena's dtype; a 16-bit arena gives the graph and the answers of the float32 constructor over its
  // widened rows. The owner appends further rows, and the index takes each in order with
  // adopt_next_row. The query heads of a kv group build one index each over the same arena.
  // key_lists: optional key_top_lists(rows [0, n) widened, n, dim, params) (graph_build.h), which
  // depend on the keys only: the group's heads compute them once and share them. Empty: computed here.
  // key_queries: optional KeyQueries of the keys against the training queries (e.g. from the GPU).
  GraphIndex(std::shared_ptr<const RowArena> rows, int64_t n, const float* train_queries, int64_t nq,
             const GraphBuildParams& params, const int64_t* train_topk = nullptr, int64_t topk_width = 0,
             std::span<const int64_t> key_lists = {}, KeyQueries key_queries = {});

  // Saves the built graph (the format: graph_index_io.cpp): only an index on a shared arena, with no
  // key taken since the build (throws ra::Error otherwise); its rows are the owner's to save.
  void save(ShardWriter& out) const;
  // An index as save() wrote it, over rows [0, n) of `rows` (the same rows it was built on, as
  // restored by their owner), with params for what the bytes do not hold: merges, the default beam,
  // append capacity (the build's parameters are the owner's to compare). The merge state (tree
  // parents, norms) is derived again, as the build derives it. Throws ra::Error naming the field
  // when the bytes are truncated or do not describe a graph over those n rows.
  static std::unique_ptr<GraphIndex> load(ShardReader& in, std::shared_ptr<const RowArena> rows, int64_t n,
                                          const GraphBuildParams& params);

  std::string name() const override { return "graph"; }
  int64_t size() const override;
  int64_t dim() const override { return dim_; }
  size_t memory_bytes() const override;  // adjacency + own arena + tail queries + merge state
  int search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
             SearchStats* stats) const override;

  // Appends one key: [dim] float32 (copied) to the flat tail and returns its id. Safe against
  // concurrent searches (they take a shared lock, append an exclusive one). When the tail reaches the
  // merge threshold it queues a merge on params.merge_pool (if none is queued or running; a full or
  // closed pool leaves the keys in the exact tail until a later append), or merges here without a pool.
  // Rethrows the error of a failed merge.
  // query: optional [dim] float32 (copied), the token's own query for this head. The merge then treats
  // it as a training query: its top-Kq list over the whole index is projected onto the graph as in the
  // build, so keys that arrive during decoding get attention-aware edges and not only the key-geometry
  // ones of a self-search (measured in docs/retrieval.md).
  // answer: optional [answer_width] int32, the query's answer from its decode search (the keys it found,
  // best first; -1 or ids past the index ignored; at most Kq used). The merge then builds the query's
  // list from it and the newest keys scored exactly instead of searching the graph again: a decode step
  // already paid for that search, and the merge's own searches were most of its cost (docs/retrieval.md).
  // Only for an index with its own arena.
  int64_t append(const float* key, const float* query = nullptr, const int32_t* answer = nullptr,
                 int answer_width = 0);
  // For an index on a shared arena: takes the arena's next row (already appended by its owner) into
  // the tail, as append does, and returns its id. Throws ra::Error when the arena has no new row.
  // queries: optional [n_queries][dim] float32 (1 to 255 rows), the token's own queries of the heads
  // that search this index (a kv head's graph: every query head of its group); the merge projects the
  // top list of each. answers: optional [n_queries][answer_width] int32, their decode answers (as append).
  int64_t adopt_next_row(const float* queries = nullptr, int n_queries = 1, const int32_t* answers = nullptr,
                         int answer_width = 0);

  // Top-k keys of each of nq queries (qs: [nq][dim] float32) from one shared traversal of the graph
  // (beam_search_group: one visited set, each key fetched once and scored for all nq), each merged with
  // the exact tail as search does: ids, scores: [nq][k] (query h at h * k); found: [nq] counts. The
  // seeds of params, if any, are shared. Thread-safe like search.
  void search_group(const float* qs, int nq, const SearchParams& params, int64_t* ids, float* scores, int* found,
                    SearchStats* stats) const;

  // Top-k keys of each of nq <= 8 queries (qs: [nq][dim] float32) by nq separate beam searches, each
  // with its own params[h] (its own seeds; the same k and ef), stepped in turn on this thread so that
  // each one's memory loads overlap the others' scoring (beam_search_interleaved): each answer is
  // exactly what search(qs + h * dim, params[h]) gives. ids, scores: [nq][k]; found: [nq]. Thread-safe
  // like search.
  void search_interleaved(const float* qs, int nq, const SearchParams* params, int64_t* ids, float* scores,
                          int* found, SearchStats* stats) const;

  // Merges the whole current tail into the graph now, on the calling thread (after any running
  // background merge). Searches may run concurrently.
  void merge_tail();
  // Waits until no merge of this index is queued or running; rethrows a failed merge's error, if any.
  void wait_for_merge();
  bool merge_running() const { return merge_scheduled_.load(); }  // queued or running on the pool
  int effective_merge_threshold() const { return threshold_; }    // after the stagger; 0 = never

  ~GraphIndex() override;
  GraphIndex(const GraphIndex&) = delete;
  GraphIndex& operator=(const GraphIndex&) = delete;

  // Introspection, for tests and benchmarks.
  int64_t graph_size() const;  // keys in the graph: n + merged
  int64_t tail_size() const;   // keys in the flat tail
  // The full check (common/full_checks.h), under one lock so no merge lands between its reads: "" when
  // the graph's nodes (its adjacency's too) and its flat tail are exactly ids [0, rows), and the 8-bit
  // copy (when kept) codes every one of them; else what does not add up.
  std::string coverage_error(int64_t rows) const;
  uint32_t entry_point() const { return build_entry_; }
  // Work of the merges so far, for benchmarks (ra-bench-merge).
  struct MergeStats {
    int64_t merges = 0;
    int64_t keys = 0;                   // keys merged
    int64_t distance_computations = 0;  // keys scored by the merges' searches and brute-force steps
    int64_t lists_rewritten = 0;        // lists of old nodes a merge replaced
  };
  MergeStats merge_stats() const;
  // A copy of the current adjacency as CSR (nodes [0, graph_size())).
  GraphCsr adjacency() const;

 private:
  KeyRows rows() const { return KeyRows{keys_, n_, arena_->row_data(arena_first_), dim_, arena_->dtype()}; }
  // What a search walks: the navigation copy unless there is none or params ask for the exact keys; then
  // qs [nq][dim_] are scaled for it into scratch.scaled_queries, and the queries to score with returned.
  KeyRows search_rows(const SearchParams& params) const;
  const float* search_queries(const SearchParams& params, const float* qs, int nq, SearchScratch& scratch) const;
  void check_params(const float* train_queries, int64_t nq, const int64_t* train_topk, int64_t topk_width) const;
  // The members the shared-arena constructor sets, nothing built or checked (load, and that constructor).
  GraphIndex(std::shared_ptr<const RowArena> rows, int64_t n, const GraphBuildParams& params);
  // The build's last step (and load's): merge state and adjacency for csr, over build_entry_.
  // norms: the build's squared key norms ([n_]), or empty: computed here (a loaded graph).
  void adopt_graph(GraphCsr csr, std::vector<float> norms = {});
  int64_t max_nodes() const;  // ids of every row the index can take: built and appended
  // The build, over the n_ keys (float32, or 16-bit rows scored as their float32 widening).
  void build(const KeyRows& keys, const float* train_queries, int64_t nq, const int64_t* train_topk,
             int64_t topk_width, std::span<const int64_t> key_lists, KeyQueries key_queries);
  static void check_answers(const float* queries, const int32_t* answers, int answer_width);
  // The arena's next row joins the tail, with its queries and their answers.
  int64_t take_row(const float* queries, int n_queries, const int32_t* answers, int answer_width);
  // The search's entries: entries_, plus params' seeds (in scratch) when it has any. Under mutex_.
  std::span<const uint32_t> entries_with_seeds(const SearchParams& params, SearchScratch& scratch) const;
  int resolve_ef(const SearchParams& params) const;  // params.ef, else the index's default
  // merged = the graph's best k answers of q (graph_best, best first) followed by every tail key scored
  // exactly, for take_best. Under mutex_ (shared), so no merge moves a key between graph and tail.
  void with_tail(const KeyRows& keys, const float* q, std::span<const Scored> graph_best, int k,
                 std::vector<Scored>& merged) const;
  void schedule_merge();  // queues a merge job unless one is queued or running
  void run_merge_job();   // the job: one merge, then the next one queued if the tail is still long
  // One merge of the tail's first keys (at most merge_batch()); holds merge_mutex_. Returns the keys merged.
  int64_t merge_now();
  int64_t merge_batch() const;
  void keep_merge_error(std::exception_ptr e);
  void rethrow_merge_error();

  const void* keys_;  // [n_][dim_] of the arena's dtype: the caller's float32 keys or the shared arena's rows
  int64_t n_;
  int64_t dim_;
  GraphBuildParams params_;
  uint32_t build_entry_ = 0;  // the build's entry point (best key for the mean training query)
  std::vector<uint32_t> spread_entries(int64_t nodes) const;  // build_entry_, then evenly spaced nodes

  mutable std::shared_mutex mutex_;  // guards graph_, entries_, merged_, taken_ and the tail's queries:
                                     // searches shared, append and a merge's apply exclusive
  // The graph over ids [0, n_ + merged_). Only a merge writes it, so a merge reads it without the lock.
  std::unique_ptr<GraphAdjacency> graph_;
  // Search entries: the build's entry point, then entry_samples nodes evenly spaced over the graph
  // (merged keys included, so a beam can start in the newest part of the sequence).
  std::vector<uint32_t> entries_;
  int64_t merged_ = 0;  // keys past the build in the graph: nodes n_ .. n_ + merged_ - 1
  // The merge's own state (merge_mutex_): per node, its tree parent (graph_merge.h) and squared norm.
  std::vector<uint32_t> parents_;
  std::vector<float> norms_;
  MergeStats merge_stats_;  // written by merges under mutex_ (exclusive)
  std::unique_ptr<NavigationKeys> nav_;    // params_.int8_navigation: every id's code (taken rows too)
  std::shared_ptr<const RowArena> arena_;  // keys appended after the build, from row arena_first_ on
  std::shared_ptr<RowArena> own_arena_;    // the same arena when the index appends to it itself
  int64_t arena_first_ = 0;                // arena row of id n_: 0 (own arena) or n_ (shared)
  // Keys past the build this index holds: ids [n_, n_ + merged_) in the graph, [n_ + merged_, n_ + taken_)
  // the tail.
  int64_t taken_ = 0;
  // The queries given with tail keys: [rows][dim_] float32, in append order, and per tail key how many
  // it came with (0 to 255). A merge takes a prefix of the tail and its queries together, under one lock, so they
  // always belong to the keys it merges.
  std::vector<float> tail_queries_;
  std::vector<uint8_t> tail_query_count_;
  // Per tail query its decode answer: [rows][Kq] ids, kNoAnswer-padded (all kNoAnswer when none came).
  std::vector<uint32_t> tail_answers_;

  int threshold_ = 0;        // merge_threshold after the stagger
  std::mutex merge_mutex_;   // one merge at a time
  std::mutex job_mutex_;     // guards merge_scheduled_'s changes and closing_; job_done_ waits on it
  std::condition_variable job_done_;
  std::atomic<bool> merge_scheduled_{false};  // a merge job is queued or running on the pool
  bool closing_ = false;     // the destructor runs: queue nothing more
  std::atomic<bool> has_merge_error_{false};
  std::mutex error_mutex_;   // guards merge_error_
  std::exception_ptr merge_error_;

};

}  // namespace ra::retriever
