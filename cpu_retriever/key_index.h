#pragma once
// The one interface every key index implements: the attention-aware graph, exact flat search and the
// FAISS baselines (DESIGN §5, §6). Scores are inner products q · k (unscaled); higher is better.
//
// Data layout, stated once: keys are n rows of dim float32, component j of key i is keys[i * dim + j].
// Per-search knobs travel in SearchParams and never live in the index, so concurrent searches with
// different knobs are safe (STYLE: no setEf).

#include <cstdint>
#include <string>

namespace ra::retriever {

struct SearchParams {
  int k = 100;      // results wanted
  int ef = 0;       // graph indexes: beam size; 0 = the index's default. The graph may take ef < k (it
                    // answers the best k keys it scored); HNSW raises it to k
  int nprobe = 0;   // IVF: inverted lists visited; 0 = the index's default
  // Graph indexes: optional hint ids [n_seeds] likely near the query, e.g. this head's answer at the
  // previous decode step (consecutive queries share much of their top-k). The graph scores them
  // (counted as distance computations) and starts its beam from them beside its own entries. Ids outside
  // the graph are ignored; other indexes ignore the hint. Not owned; must stay valid during the search.
  const int64_t* seeds = nullptr;
  int n_seeds = 0;
  // Graph indexes built with an 8-bit navigation copy (GraphBuildParams::int8_navigation): walk the
  // exact keys instead, e.g. to measure what the copy costs in recall.
  bool exact_navigation = false;
  // Graph indexes: nodes a beam search expands per step (1: strictly best-first; 2 to 4: the best few
  // candidates at once, their loads in flight together; beam_search).
  int expand = 1;
  // HeadShard: also count how many of the answer's ids are among the exact top-k of every row it holds
  // (SearchStats::recall_*; a full scan per query, for accuracy benchmarks). Indexes ignore it.
  bool audit_recall = false;
  // HeadShard with scan budgets (ShardIndexParams::scan_fractions): which one sets ef / nprobe.
  int scan_budget = 0;
};

// Work counters of one search, for benchmarks (DESIGN §5: keys scanned per query).
struct SearchStats {
  int64_t distance_computations = 0;  // q · k evaluations
  int64_t hops = 0;                   // graph nodes expanded (0 for non-graph indexes)
  // With SearchParams::audit_recall: answer ids among the exact top-k, and the exact top-k's size.
  int64_t recall_hits = 0, recall_wanted = 0;
};

class KeyIndex {
 public:
  virtual ~KeyIndex() = default;

  virtual std::string name() const = 0;
  virtual int64_t size() const = 0;  // keys indexed
  virtual int64_t dim() const = 0;
  virtual size_t memory_bytes() const = 0;  // index structures, excluding the caller's key matrix

  // Top-k keys of query q: [dim] float32 by inner product. Writes min(k, size()) results to
  // ids: [k] and scores: [k] (q · k_id, float32), best first, and returns how many. Adds its work to
  // *stats when stats is non-null. Thread-safe: any number of searches may run concurrently.
  virtual int search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
                     SearchStats* stats) const = 0;
};

}  // namespace ra::retriever
