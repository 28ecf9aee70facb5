#pragma once
// Folding new keys into a built graph: the background merge of GraphIndex's flat tail (DESIGN §6,
// issue #3). Internal to cpu_retriever; GraphIndex runs it off the search path and swaps the result in.

#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/graph_search.h"

#include <cstdint>
#include <span>

namespace ra::retriever {

// Inserts n_new keys into graph, whose nodes are [0, graph.nodes()). The new keys are nodes
// graph.nodes() .. graph.nodes() + n_new - 1, and keys must give the rows of all of them.
// Each new key x is linked the way the build's connectivity step links keys:
//  1. candidates: a beam search (params.ef_construction) of the old graph from `entries` with x's own
//     vector, plus the best new keys by x · y;
//  2. x's out-edges: the candidates pruned by the occlusion rule to params.M;
//  3. reverse edges into each kept neighbour, re-pruned to the degree cap (0: 2 M) when it is full;
//  4. attention-aware edges from `queries` ([rows][keys.dim] float32, e.g. the new tokens' own queries;
//     may be empty): each query's exact top-Kq list over all keys, old and new, is projected as in the
//     build (add_projection_candidates); each pivot keeps the occlusion-pruned union of its edges and
//     these candidates, up to the degree cap, and every new edge gets its reverse edge as in 3;
//  5. reachability: a new key no edge reaches from entries[0] is linked from its best old candidate.
// Searches run in parallel on the unchanged old graph; edges are applied in key and query order, so the
// output does not depend on params.threads. Returns the adjacency over graph.nodes() + n_new nodes.
GraphCsr insert_keys(const KeyRows& keys, const GraphCsr& graph, int64_t n_new, std::span<const uint32_t> entries,
                     const GraphBuildParams& params, std::span<const float> queries = {});

}  // namespace ra::retriever
