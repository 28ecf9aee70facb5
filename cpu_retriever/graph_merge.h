#pragma once
// Folding new keys into a built graph: the tail merge of GraphIndex (DESIGN §6, issues #3 and #16).
// Internal to cpu_retriever. A merge reads the graph as it stands (searches keep running on it) and
// returns what changes, a GraphDelta, which the index applies under its exclusive lock. Its cost is
// O(new keys · search) plus O(queries · search): it never visits the whole graph.
//
// Reachability without a flood: every node but the root (entries[0]) has a tree parent whose edge to
// it no merge may prune (parent[v] -> v is "pinned" in parent[v]'s list). The build's graph reaches
// every node from the root, and spanning_parents() gives its BFS tree; each merge gives each new node
// a parent among the nodes with an edge to it (or links it from its best old candidate), so every key
// stays reachable from the root, as after the build.

#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/graph_search.h"

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace ra::retriever {

class GraphAdjacency;

inline constexpr uint32_t kNoParent = ~uint32_t{0};
inline constexpr uint32_t kNoAnswer = ~uint32_t{0};  // padding of a query's decode answer

// The BFS tree of csr from root: parent[v] for every node, root's parent itself, kNoParent where
// root does not reach.
std::vector<uint32_t> spanning_parents(const GraphCsr& csr, uint32_t root);

// The graph a merge extends: nodes [0, graph.nodes()) in graph, n_new more after them.
struct MergeGraph {
  const GraphAdjacency& graph;
  std::span<const uint32_t> entries;  // search entries; entries[0] is the root
  std::span<uint32_t> parents;        // [nodes + n_new]: the old nodes' tree parents; the new ones are set here
  std::span<const float> norms;       // [nodes + n_new] squared key norms, new keys included
};

// The merged tokens' own queries: rows [n][dim] float32, and optionally each one's decode answer,
// answers [n][answer_width] ids best first, kNoAnswer-padded (empty, or a row starting kNoAnswer: none).
struct MergeQueries {
  std::span<const float> rows;
  std::span<const uint32_t> answers;
  int answer_width = 0;
};

// What a merge changes, in node-id order.
struct GraphDelta {
  std::vector<std::vector<uint32_t>> added;                        // lists of nodes nodes + j
  std::vector<std::pair<uint32_t, std::vector<uint32_t>>> changed;  // old node, its new list
  int64_t distance_computations = 0;  // keys scored against a new key or a query (searches included)
};

// Inserts n_new keys, nodes g.graph.nodes() .. + n_new - 1 (keys gives the rows of all nodes). Each new
// key x is linked the way the build's connectivity step links keys:
//  1. candidates: a beam search (params.ef_construction) of the old graph from the entries with x's
//     own vector, plus the best new keys by x · y;
//  2. x's out-edges: the candidates pruned by the occlusion rule to params.M;
//  3. reverse edges into each kept neighbour, re-pruned to the degree cap (0: 2 M) when it is full;
//  4. attention-aware edges from `queries` (the new tokens' own queries; may be empty): each query's
//     top-Kq list over all keys is projected as in the build (add_projection_candidates): each pivot
//     keeps the occlusion-pruned union of its edges and these candidates, up to the degree cap, and
//     every new edge gets its reverse edge as in 3. The list: with a decode answer, the best Kq of the
//     answer's keys, the last params.merge_recent_keys old nodes and the new keys, all scored exactly
//     (no search); without, a beam search of the old graph (params.merge_query_ef) merged with the
//     exact scores of the new keys;
//  5. tree parents for the new keys (see above).
// Every re-pruning keeps the pinned tree edges. Single-threaded and deterministic; scratch: any
// SearchScratch (its visited set grows to the graph).
GraphDelta insert_keys(const KeyRows& keys, const MergeGraph& g, int64_t n_new, const GraphBuildParams& params,
                       const MergeQueries& queries, SearchScratch& scratch);

}  // namespace ra::retriever
