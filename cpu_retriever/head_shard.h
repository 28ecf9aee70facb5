#pragma once
// One retriever shard: the keys and values of one (layer, kv head) that live on the CPU, the key
// indexes over them, and a flat tail of tokens evicted from the GPU window after the build (DESIGN §3).
//
// Rows: the build's n keys are rows [0, n) (sequence positions first_position + i); evicted tokens are
// appended as rows n, n + 1, ... in eviction order. Key-only indexes cover rows [0, n) and the shard
// scans the rows [n, size()) exactly as a flat tail, merging both results; the graphs take appended
// rows themselves (each its own flat tail, merged into the graph in the background past
// graph.merge_threshold). Either way every row is searched exactly once.
//
// Memory: the keys are held once, in the KV store's key dtype (bf16 for Llama checkpoints, or int8 rows
// with a scale each: kv_int8.h). The flat index and the group's graphs score those rows in place, and
// attention reads the same rows, so a key's score in the index is exactly its score in attention. Only
// FAISS keeps a float32 copy of its own (of the rows widened, an int8 row dequantised). Per token, the
// store holds kv_row_bytes(key dtype, head_dim) + kv_row_bytes(value dtype, head_dim) bytes: 2 head_dim
// + 8 for int8 K and V, 4 head_dim for bf16 (memory_bytes).
//
// Indexes: the graph is built per query head from that head's training queries (the paper's layout),
// or, with graph_per_kv_head, once per kv head from the training queries of all its group's heads and
// searched by several query heads per traversal (search_attend_group); the key-only indexes (flat, IVF,
// HNSW) are built once per kv head and shared by its group.
//
// Merges: the graphs' tail merges run on one MaintenancePool per process (maintenance_pool.h), with
// thresholds staggered by the shard's (layer, kv head), so a retriever's thread count stays fixed and
// its indexes do not all merge on the same token.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cpu_retriever/answer_history.h"
#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/key_index.h"
#include "cpu_retriever/kv_store.h"
#include "cpu_retriever/scan_budget.h"

namespace ra::retriever {

class ShardReader;
class ShardWriter;

enum class IndexKind { kFlat, kIvf, kHnsw, kGraph };

struct ShardIndexParams {
  IndexKind kind = IndexKind::kFlat;
  GraphBuildParams graph;      // kGraph
  int ivf_nlist = 0;           // kIvf; 0 = about 4 sqrt(n), capped so each list has >= 39 keys to train on
  int hnsw_M = 32;             // kHnsw
  int hnsw_ef_construction = 64;
  uint64_t seed = 0;
  // kGraph: each search is seeded with the member's last warm_history answers (AnswerHistory); 0 = off.
  int warm_history = 0;
  // Evicted tokens the shard can take after the build (address space only: see RowArena).
  int64_t append_capacity = int64_t{1} << 20;
  // kGraph with graph.merge_threshold > 0: where the merges run when graph.merge_pool is null (not
  // owned); null = process_maintenance_pool().
  MaintenancePool* maintenance = nullptr;
  // kGraph: this shard's (layer, kv head) as one number, e.g. layer * n_kv_heads + kv_head; member m's
  // graph staggers its merge threshold by stagger_key * group_size + m (GraphBuildParams::
  // merge_stagger_key). < 0: the count of graph shards this process made before stands in (the same for
  // the same construction order).
  int64_t stagger_key = -1;
  // kGraph: one graph per kv head, trained by every query head of its group, instead of one per query
  // head (issue 16 item 3): a group's heads then share its traversals (search_attend_group).
  bool graph_per_kv_head = false;
  // kGraph per kv head: an appended row brings only one member's query (and answer) to the merge,
  // member row % group_size, instead of the whole group's (the merge's query work / group).
  bool merge_one_query = false;
  // Scan budgets: for each fraction, each index's knob (the graph's or HNSW's ef, IVF's nprobe) is chosen
  // at the build so that its searches for top-scan_top_k score that fraction of its keys, measured on the
  // shard's training queries (scan_budget.h). A search then uses budget SearchParams::scan_budget and
  // ignores its ef and nprobe. Empty: off. Needs training queries.
  std::vector<double> scan_fractions;
  int scan_top_k = 100;
};

// Per-thread buffers of search_attend; they grow to the largest k seen and are then reused.
struct ShardScratch {
  std::vector<int64_t> ids, tail_ids, merged_ids;  // [k]
  std::vector<float> scores, tail_scores;          // [k]
  std::vector<float> weights;                      // [k]
  std::vector<int64_t> group_ids;                  // [members][k]  (search_attend_group)
  std::vector<float> group_scores;                 // [members][k]
  std::vector<int> group_found;                    // [members]
  std::vector<int64_t> group_seeds;                // the members' recorded answers, together
  std::vector<SearchParams> member_params;         // [members] (search_attend_interleaved)
  std::vector<int64_t> audit_ids;                  // [k] (SearchParams::audit_recall)
  std::vector<float> audit_scores;                 // [k]
};

class HeadShard {
 public:
  // keys, values: [n] rows of head_dim (kv_rows.h: float32, or the form they travelled in), copied into
  // the store in its dtypes (one KvDtype for both, or KvDtypes{key, value}) as KvStore::append takes
  // them; a row a side cannot take (inf or NaN into int8, int8 rows into another dtype) is an ra::Error
  // naming it. train_queries: [group_size][n_train][head_dim] float32,
  // the post-RoPE prefill queries of the group's query heads (read during the build; kGraph only).
  // n may be 0 (a prompt that fits in the GPU's static set): then only the tail is searched.
  // train_lists: optional [group_size][n_train][list_width] int32, each training query's top rows of
  // keys, best first (-1 and rows >= n ignored), e.g. from the GPU; null: the graphs find them.
  // key_queries: optional, with one graph per kv head: [n] keys' best training rows of the group
  // ([group_size][n_train] order), GraphBuildParams::connect_query_lists's; empty: the graph finds them.
  HeadShard(int64_t head_dim, KvDtypes dtypes, KvRows keys, KvRows values, int64_t n, int group_size,
            const float* train_queries, int64_t n_train, const ShardIndexParams& params,
            const int32_t* train_lists = nullptr, int list_width = 0, KeyQueries key_queries = {});

  // Saving and loading a built shard (issue 18: `ra serve --load` rebuilds no index; the format is in
  // head_shard_io.cpp). save() appends one record: the parameters the shard was built with, its rows
  // in the store's dtype (bit for bit), every index's built state (FAISS's bytes as faiss::write_index
  // writes them, the graphs' adjacency, entries and 8-bit copy) and the scan budgets' knobs. Only the
  // build is saved: a shard with rows appended since (merged into a graph or not) is an ra::Error, so
  // no row is ever dropped silently. Searches may run meanwhile; appends may not (the owner serialises
  // them, as it does append itself).
  void save(ShardWriter& out) const;
  // The shard of the record at `in` (left just past it), made with a fresh shard's arguments: runtime
  // knobs (warm_history, merge_threshold and the merges' pool, append capacities, default_ef,
  // merge_one_query, stagger_key) come from params, the built state from the bytes. The build's own
  // parameters (kind, head_dim, key and value dtypes, group size, the index's build parameters, scan
  // fractions) must equal the saved ones: the first that differs is an ra::Error naming it and both
  // values, as is any truncated or malformed field (an int8 row's scale too). Answer histories (warm-start seeds, last answers) start empty.
  static std::unique_ptr<HeadShard> load(ShardReader& in, int64_t head_dim, KvDtypes dtypes, int group_size,
                                         const ShardIndexParams& params);

  // Appends one evicted token: key, value: [head_dim] float32, rounded as the build's rows (an int8
  // side refuses inf and NaN: ra::Error, nothing appended). The owner serialises it with searches.
  // member_queries: optional [group_size][head_dim] float32, the token's own queries of the group's
  // query heads; the graphs merge the token by them (GraphIndex::append). Other indexes ignore them.
  // member_answers: optional [group_size][answer_width] int32 (-1 padded), those queries' answers when
  // they were decoded (last_answer at that step): the merge then searches nothing for them.
  void append(const float* key, const float* value, const float* member_queries = nullptr,
              const int32_t* member_answers = nullptr, int answer_width = 0);

  // Member's answer from its latest search (search_attend*): row ids, best first; empty before the
  // first. Kept only where appended rows merge into graphs (their queries' lists come from it).
  std::span<const int64_t> last_answer(int member) const;

  // Partial attention (DESIGN §4) of query q: [head_dim] float32 of group member `member` over its
  // top-k rows (index ∪ tail): o: [head_dim] float32, returns lse (−inf and o = 0 when empty).
  // With warm_history > 0 the search is seeded with the member's previous answers and records this
  // one, so searches of one member must be serialised and come in decode order (the service's step
  // loop); different members may search concurrently.
  float search_attend(int member, const float* q, const SearchParams& params, float scale, ShardScratch& scratch,
                      float* o, SearchStats* stats);

  // Partial attention of `count` consecutive group members from `first` on: qs: [count][head_dim]
  // float32, o: [count][head_dim], lse: [count], each as search_attend gives it. With a graph per kv
  // head, one traversal serves them all (GraphIndex::search_group, seeded with every member's recorded
  // answers); otherwise each member searches on its own. Members' searches are serialised as above.
  void search_attend_group(int first, int count, const float* qs, const SearchParams& params, float scale,
                           ShardScratch& scratch, float* o, float* lse, SearchStats* stats);

  // The same with a separate search per member, as search_attend gives each, stepped in turn on this
  // thread when the group has one graph (GraphIndex::search_interleaved: each search's memory loads
  // overlap the others' scoring); otherwise one after another. count <= 8.
  void search_attend_interleaved(int first, int count, const float* qs, const SearchParams& params, float scale,
                                 ShardScratch& scratch, float* o, float* lse, SearchStats* stats);

  // Appended rows merged into the graphs so far and rows still in their flat tails, over the shard's
  // graphs (a graph per query head counts each row once per graph); zero without graphs.
  struct TailCounts {
    int64_t merged = 0, tail = 0;
  };
  TailCounts tail_counts() const;

  // The full check (common/full_checks.h): "" when the indexes and flat tails cover the store's rows
  // [0, size()) exactly (each graph: its nodes plus its tail; other indexes: the built rows plus the
  // flat tail rows search_attend scans), else what does not add up.
  std::string coverage_error() const;

  // Scan budgets fitted (ShardIndexParams::scan_fractions; 0 when off), and budget b's knobs per index.
  size_t scan_budget_count() const { return budgets_.size(); }
  const std::vector<ScanBudget>& scan_budgets(size_t b) const { return budgets_.at(b); }

  // Whether one traversal can serve several members (graph per kv head).
  bool shares_traversals() const { return graph_per_kv_head_; }

  int64_t size() const { return store_.size(); }
  int64_t indexed() const { return n_; }
  KvDtypes dtypes() const { return store_.dtypes(); }
  // The store's rows (codes and scales of int8 rows, in whole commit steps: KvStore) and every index's
  // own structures.
  size_t memory_bytes() const;
  size_t kv_bytes() const;  // of it, the store's rows alone

 private:
  // The store (room for n + params.append_capacity rows, empty) and the sizes; no rows, no index.
  struct Empty {};
  HeadShard(Empty, int64_t head_dim, KvDtypes dtypes, int64_t n, int group_size, const ShardIndexParams& params);
  // kGraph: the shard's graph state (answer histories, tail mode) and its graphs' parameters: merges on
  // the given pool or the process's. Returns the shard's stagger key (ShardIndexParams::stagger_key).
  int64_t init_graphs(const ShardIndexParams& params, GraphBuildParams& gp);
  const KeyIndex* index_for(int member) const;
  size_t index_slot(int member) const { return indexes_.size() == 1 ? 0 : static_cast<size_t>(member); }
  // params with index `slot`'s knobs of budget params.scan_budget (scan_fractions), or params itself.
  SearchParams budgeted(size_t slot, const SearchParams& params) const;
  // Chooses every index's knobs for every budget (the constructor, with scan_fractions).
  void fit_budgets(const ShardIndexParams& params, const float* train_queries, int64_t n_train);
  // With params.audit_recall: counts ids[0, n) among the exact top-k of every row into stats.
  void audit(const float* q, const int64_t* ids, int64_t n, const SearchParams& params, ShardScratch& s,
             SearchStats* stats) const;
  // The start of search_attend_group / _interleaved: checks the member range, and answers each member
  // with search_attend (returns true) unless a group graph serves several at once; then sizes the
  // scratch's group buffers for them (returns false).
  bool members_one_by_one(int first, int count, const float* qs, const SearchParams& params, float scale,
                          ShardScratch& s, float* o, float* lse, SearchStats* stats);
  // Their end: records each member's answer (s.group_ids / group_found) as its next seeds, and its
  // partial attention into o, lse.
  void attend_members(int first, int count, const float* qs, const SearchParams& params, float scale,
                      ShardScratch& s, float* o, float* lse, SearchStats* stats);

  int64_t head_dim_;
  ShardIndexParams params_;  // as built (or loaded): save() records the build's
  int64_t n_;      // rows covered by the indexes
  KvStore store_;  // every row, in its dtypes: scored by the indexes, read by attention
  std::vector<std::unique_ptr<KeyIndex>> indexes_;  // one per member (kGraph) or one shared; empty if n == 0
  bool graph_tail_ = false;  // appended rows go to the graphs; otherwise rows [n, size()) are scanned here
  bool graph_per_kv_head_ = false;  // kGraph: indexes_ holds the group's one graph
  bool merge_one_query_ = false;    // ShardIndexParams::merge_one_query
  int group_size_ = 1;
  std::vector<AnswerHistory> answers_;  // per member: seeds of its next graph search
  std::vector<std::vector<int64_t>> last_answers_;  // per member: its latest answer (graph_tail_ only)
  std::vector<std::vector<ScanBudget>> budgets_;  // [budget][index] (scan_fractions), or empty
};

}  // namespace ra::retriever
