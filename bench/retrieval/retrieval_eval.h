#pragma once
// The retrieval benchmark's measurement core (`ra bench retrieval`, issue #3): for one layer of a
// q/k/v dump, builds every index kind per head, sweeps its knob over the test queries and accumulates
// recall, keys scanned, latency, build cost and attention error into rows.
//
// Setup per query head h (kv head g = h / group): keys and values are kv head g's positions [0, N);
// training queries are h's queries at [0, N) (or, for "graph_kv", "graph_kv_int8" and "graph_group",
// every query head of the group; "graph_kv_int8" walks the graph's 8-bit navigation copy, "graph_group"
// searches the group's heads in one traversal);
// test queries are h's queries at [N, T), each searched over keys [0, N).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {

// One layer of a dump, float32, C order:
//   q: [n_heads][tokens][head_dim], k and v: [n_kv_heads][tokens][head_dim]
struct LayerQkv {
  int64_t layer = 0;
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0, tokens = 0;
  float scale = 0.0f;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
};

struct RetrievalBenchConfig {
  int64_t prefill = 0;           // N: keys and training queries come from [0, N)
  int k = 100;                   // recall@k
  int threads = 0;               // search parallelism over test queries and build threads; 0 = all
  int64_t train_queries = 0;     // 0 = all N prefill queries; else a seeded subsample
  int64_t max_test_queries = 0;  // 0 = all T − N; else this many, evenly spaced over [N, T)
  std::vector<int64_t> heads;    // query heads to run; empty = all
  std::vector<std::string> indexes = {"flat", "ivf", "hnsw", "graph", "graph_kv"};
  uint64_t seed = 1;
  int graph_M = 32;
  bool graph_l2_occlusion = true;   // prune with Euclidean key distances (false: inner products)
  bool graph_fill = false;          // fill pruned lists back up to M
  int graph_degree_cap = 0;         // 0 = 2 * M
  int graph_ef_construction = 64;
  int graph_connect_query_lists = 1;    // GraphBuildParams::connect_query_lists
  int graph_connect_max_in_degree = 0;  // GraphBuildParams::connect_max_in_degree
  int graph_entry_samples = 32;
  int graph_pivots = 8;             // GraphBuildParams::pivots
  int graph_pivot_span = 32;        // GraphBuildParams::pivot_span
  int graph_Kq = 100;               // GraphBuildParams::Kq
  bool graph_final_prune = true;    // GraphBuildParams::final_prune
  int graph_repair_ef = 0;          // GraphBuildParams::repair_ef
  int graph_repair_stride = 1;      // GraphBuildParams::repair_stride
  int graph_key_lists_stride = 1;   // GraphBuildParams::key_lists_stride
  // > 0: also build each graph on the first N - graph_append keys and queries, append the last
  // graph_append keys (rows "graph_tail": in the exact tail), then merge them into the graph
  // (rows "graph_merged"): how decode-time tokens fare against a graph built on all N. Rows
  // "graph_merged_answers": the same merge given each query's decode answer (GraphIndex::append), as a
  // retriever gives it, instead of searching for the query itself. With index graph_kv also rows
  // "graph_kv_merged" (the kv head's graph, each key merged with its whole group's queries and answers)
  // and "graph_kv_merged_one" (only one member's, rotating).
  int64_t graph_append = 0;
  // > 0: also sweep each graph in decode order (rows "graph_warm"): every position of [N, T) in turn,
  // seeded with the answers of the previous graph_warm positions (AnswerHistory).
  int graph_warm = 0;
  int graph_expand = 1;             // SearchParams::expand of every graph search (nodes per step)
  int hnsw_M = 32;
  int hnsw_ef_construction = 200;
  // The dtype the indexes score the keys in: bf16 / f16 round them once, as the retriever's KV store
  // holds them; the graphs and flat search then read the 16-bit rows in place, FAISS gets them widened.
  // The truth stays the exact top-k over the float32 keys, so recall includes the rounding's cost.
  KvDtype key_dtype = KvDtype::kF32;
};

// Sums over (layer, head, test query) for one (index, knob).
struct RowAccumulator {
  std::string index;
  std::string knob;
  int64_t queries = 0;
  double recall_sum = 0, scanned_sum = 0, us_sum = 0, attn_err_sum = 0;
  std::map<std::pair<int64_t, int64_t>, std::pair<double, int64_t>> head_recall;  // (layer, head) -> sum, n
  struct LayerSums {
    int64_t queries = 0;
    double recall_sum = 0, scanned_sum = 0;
  };
  std::map<int64_t, LayerSums> per_layer;  // layer -> sums over its heads and test queries
  double build_s_sum = 0;    // over index instances
  double index_bytes_sum = 0;
  int64_t instances = 0;     // indexes built (per head or per kv head)
};

// Runs every configured index over one layer, adding into `rows` (keyed by "index|knob", in sweep
// order of first appearance recorded in `order`). Throws ra::Error on inconsistent shapes or N.
void run_retrieval_layer(const LayerQkv& layer, const RetrievalBenchConfig& config,
                         std::map<std::string, RowAccumulator>& rows, std::vector<std::string>& order);

// Keys scanned (fraction of N) that `index` needs for mean recall >= target, over one layer (or over
// all layers when layer < 0), interpolated linearly between consecutive knob values of its sweep (in
// sweep order). NaN when no knob reaches the target; the first knob's figure when it already does.
double scanned_at_recall(const std::map<std::string, RowAccumulator>& rows, const std::vector<std::string>& order,
                         const std::string& index, int64_t layer, double target);

// The per-layer comparison the issue's target is stated on ("at least 2x fewer keys scanned than the
// best FAISS baseline at the same recall, on every layer"): for each target recall, one line per layer
// (then "all") with every index's scanned fraction at that recall and the ratio best-FAISS / graph.
// Text, for the benchmark's stdout.
std::string layer_comparison_table(const std::map<std::string, RowAccumulator>& rows,
                                   const std::vector<std::string>& order, const std::vector<double>& targets);

// The JSON line of one row (fields of the issue: index, knob, recall, worst_head_recall, scanned,
// us_per_query, build_s, index_bytes, attn_rel_err, plus queries, heads and "layers": per layer
// {"recall", "scanned"}).
std::string row_json(const RowAccumulator& row);

}  // namespace ra::retriever
