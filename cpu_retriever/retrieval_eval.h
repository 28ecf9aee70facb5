#pragma once
// The retrieval benchmark's measurement core (`ra bench retrieval`, issue #3): for one layer of a
// q/k/v dump, builds every index kind per head, sweeps its knob over the test queries and accumulates
// recall, keys scanned, latency, build cost and attention error into rows.
//
// Setup per query head h (kv head g = h / group): keys and values are kv head g's positions [0, N);
// training queries are h's queries at [0, N) (or, for "graph_kv", every query head of the group);
// test queries are h's queries at [N, T), each searched over keys [0, N).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

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
  int64_t max_test_queries = 0;  // 0 = all T − N
  std::vector<int64_t> heads;    // query heads to run; empty = all
  std::vector<std::string> indexes = {"flat", "ivf", "hnsw", "graph", "graph_kv"};
  uint64_t seed = 1;
  int graph_M = 32;
  bool graph_l2_occlusion = true;   // prune with Euclidean key distances (false: inner products)
  bool graph_fill = false;          // fill pruned lists back up to M
  int graph_degree_cap = 0;         // 0 = 2 * M
  int graph_ef_construction = 64;
  int graph_entry_samples = 32;
  int hnsw_M = 32;
  int hnsw_ef_construction = 200;
};

// Sums over (layer, head, test query) for one (index, knob).
struct RowAccumulator {
  std::string index;
  std::string knob;
  int64_t queries = 0;
  double recall_sum = 0, scanned_sum = 0, us_sum = 0, attn_err_sum = 0;
  std::map<std::pair<int64_t, int64_t>, std::pair<double, int64_t>> head_recall;  // (layer, head) -> sum, n
  double build_s_sum = 0;    // over index instances
  double index_bytes_sum = 0;
  int64_t instances = 0;     // indexes built (per head or per kv head)
};

// Runs every configured index over one layer, adding into `rows` (keyed by "index|knob", in sweep
// order of first appearance recorded in `order`). Throws ra::Error on inconsistent shapes or N.
void run_retrieval_layer(const LayerQkv& layer, const RetrievalBenchConfig& config,
                         std::map<std::string, RowAccumulator>& rows, std::vector<std::string>& order);

// The JSON line of one row (fields of the issue: index, knob, recall, worst_head_recall, scanned,
// us_per_query, build_s, index_bytes, attn_rel_err, plus queries and heads).
std::string row_json(const RowAccumulator& row);

}  // namespace ra::retriever
