#pragma once
// The build steps of the attention-aware graph (DESIGN §6), as free functions so that tests and the
// benchmark can run them one by one. Every step is deterministic regardless of the thread count:
// per-node work runs in parallel, and anything that mutates shared adjacency is applied in id order.

#include "cpu_retriever/graph_index.h"

#include <cstdint>
#include <vector>

namespace ra::retriever {

// Step 1. Exact top-k keys of each query by inner product, best first (ties: lower id).
// keys: [n][dim], queries: [nq][dim] float32. Returns [nq][k] int64, padded with -1 when k > n.
std::vector<int64_t> exact_topk_ip(const float* keys, int64_t n, int64_t dim, const float* queries,
                                   int64_t nq, int64_t k, int threads);

// Steps 2-4. topk: [nq][width] int64 lists (best first; invalid entries ignored).
// Returns the graph and its entry point (the key with the best score for the mean training query).
struct BuiltGraph {
  GraphCsr csr;
  uint32_t entry = 0;
};
BuiltGraph build_graph(const float* keys, int64_t n, int64_t dim, const float* queries, int64_t nq,
                       const int64_t* topk, int64_t width, const GraphBuildParams& params);

}  // namespace ra::retriever
