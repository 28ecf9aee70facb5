#pragma once
// The attention-aware graph index of one head (DESIGN §6, the RoarGraph projection), plus a flat tail
// for keys appended after the build (new tokens during decoding).
//
// Keys: [n][dim] float32, component j of key i at keys[i * dim + j]. The index references the caller's
// key matrix (it must outlive the index and stay unchanged); keys appended later are copied into the
// index's own tail and get ids n, n + 1, ... The tail is scanned exactly and merged with the graph's
// results. It is NOT merged into the graph in the background yet (TODO, issue #3): rebuild to fold it in.

#include "cpu_retriever/graph_search.h"
#include "cpu_retriever/key_index.h"

#include <cstdint>
#include <shared_mutex>
#include <span>
#include <vector>

namespace ra::retriever {

// How a kept neighbour s occludes a candidate c of pivot p during pruning (see graph_build.cpp).
enum class Occlusion { kInnerProduct, kL2 };

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
};

class GraphIndex final : public KeyIndex {
 public:
  // keys: [n][dim] float32, referenced. train_queries: [nq][dim] float32, read during the build only.
  // train_topk: optional [nq][topk_width] int64, each training query's exact top keys, best first
  // (e.g. from the GPU); entries < 0 or >= n are ignored. When null, the top-Kq lists are computed
  // here by a multi-threaded brute force. Throws ra::Error on bad arguments.
  GraphIndex(const float* keys, int64_t n, int64_t dim, const float* train_queries, int64_t nq,
             const GraphBuildParams& params, const int64_t* train_topk = nullptr, int64_t topk_width = 0);

  std::string name() const override { return "graph"; }
  int64_t size() const override;
  int64_t dim() const override { return dim_; }
  size_t memory_bytes() const override;  // adjacency + tail copy + pooled visited sets
  int search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
             SearchStats* stats) const override;

  // Appends one key: [dim] float32 (copied) to the flat tail and returns its id. Safe against
  // concurrent searches (they take a shared lock, append an exclusive one).
  int64_t append(const float* key);

  // Introspection, for tests and benchmarks.
  int64_t graph_size() const { return n_; }
  int64_t tail_size() const;
  uint32_t entry_point() const { return entry_; }
  const GraphCsr& adjacency() const { return csr_; }

 private:
  const float* keys_;  // [n_][dim_] float32, the caller's
  int64_t n_;
  int64_t dim_;
  GraphBuildParams params_;
  GraphCsr csr_;
  uint32_t entry_ = 0;
  std::vector<uint32_t> entries_;  // entry_ first, then entry_samples keys evenly spaced over [0, n_)

  mutable std::shared_mutex tail_mutex_;
  std::vector<float> tail_;  // [tail_size][dim_] float32, appended keys (ids n_ + row)

  mutable ScratchPool scratch_;
};

}  // namespace ra::retriever
