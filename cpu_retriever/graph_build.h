#pragma once
// The build steps of the attention-aware graph (DESIGN §6), as free functions so that tests and the
// benchmark can run them one by one. Every step is deterministic regardless of the thread count:
// per-node work runs in parallel, and anything that mutates shared adjacency is applied in id order.

#include "cpu_retriever/graph_index.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ra::retriever {

// Step 1. Exact top-k keys of each query by inner product, best first (ties: lower id), scored by
// blocked BLAS (blas_top_k.h). keys: [n][dim], queries: [nq][dim] float32. Returns [nq][k] int64,
// padded with -1 when k > n.
std::vector<int64_t> exact_topk_ip(const float* keys, int64_t n, int64_t dim, const float* queries,
                                   int64_t nq, int64_t k, int threads);

// The keys' own top lists that GraphBuildParams::key_lists_stride asks for: every stride-th key's exact
// top-min(Kq, n) keys by inner product, best first. keys: [n][dim] float32. Returns
// [key_list_count(n, params)][min(Kq, n)] int64, or nothing when the stride is 0 or n < 2. They depend on
// the keys and those two parameters only, so the query heads of a kv group can share them.
std::vector<int64_t> key_top_lists(const float* keys, int64_t n, int64_t dim, const GraphBuildParams& params);
int64_t key_list_count(int64_t n, const GraphBuildParams& params);

// The occlusion rule (RNG / HNSW heuristic) of every pruning step. cands: candidates c of pivot p with
// score = p · c, free of p itself; norms: [nodes] float32 squared key norms (read for Occlusion::kL2).
// Candidates are visited nearest to the pivot first (under the params' distance), and c is kept unless
// an already-kept s "occludes" it, i.e. s is closer to c than the pivot is, so a search that reaches p
// still reaches c through s:
//  - Occlusion::kInnerProduct: c · s > c · p (distance -(a · b) on both sides);
//  - Occlusion::kL2: |c - s|^2 < |c - p|^2 (Euclidean between keys).
// With fill_pruned, occluded candidates then fill the remaining slots in order (HNSW's
// keepPrunedConnections). Returns at most max_keep ids.
// kept_before: optional ids that an earlier prune of p under the same params kept (any max_keep; e.g.
// p's list before edges were appended to it). No two of them occlude each other, so their pairs are not
// scored again; the result is the one without it. Ignored with fill_pruned (a filled list holds
// occluded ids).
std::vector<uint32_t> occlusion_prune(const KeyRows& keys, const float* norms, uint32_t p,
                                      const std::vector<Scored>& cands, int max_keep, const GraphBuildParams& gp,
                                      std::span<const uint32_t> kept_before = {});

// Step 2's candidates from one training query's top list (best first, valid ids): its best key (the
// pivot) gets the rest of the list, and each of its next pivots - 1 keys the list's first pivot_span
// keys (see GraphBuildParams). Appends to pool[pivot], which the caller prunes per pivot.
// With parts > 1, only pivots with id % parts == part take candidates (one thread's share of a pass).
void add_projection_candidates(std::span<const uint32_t> list, const GraphBuildParams& gp,
                               std::vector<std::vector<uint32_t>>& pool, uint32_t part = 0, uint32_t parts = 1);

// Reachability: floods adj from root and links every node it did not reach from source(node, reached),
// a node already reached, then floods on from it. The new edges may exceed any degree cap, by design.
// reached_from_root: optional, the marks (1 = reached) of that first flood when the caller has flooded
// adj from root already.
void link_unreached(std::vector<std::vector<uint32_t>>& adj, uint32_t root,
                    const std::function<uint32_t(uint32_t, const std::vector<uint8_t>&)>& source,
                    std::vector<uint8_t> reached_from_root = {});

// Edge r -> x in adj, unless present; a list already at `cap` is re-pruned by the occlusion rule with x
// among the candidates. norms: [nodes] squared key norms.
void link_pruned(const KeyRows& keys, const float* norms, std::vector<std::vector<uint32_t>>& adj, uint32_t r,
                 uint32_t x, size_t cap, const GraphBuildParams& gp);

// Projection of top lists (valid ids, best first) onto an existing graph: each pivot (add_projection_
// candidates) keeps the occlusion-pruned union of its edges and its candidates, up to `cap`; once every
// pivot's list is in place, each new edge gets its reverse edge (link_pruned). Deterministic for any
// thread count.
void project_onto(const KeyRows& keys, const float* norms, std::vector<std::vector<uint32_t>>& adj,
                  const std::vector<std::vector<uint32_t>>& lists, size_t cap, const GraphBuildParams& gp,
                  int threads);

// Search entries: `entry`, then `samples` nodes evenly spaced over [0, nodes).
std::vector<uint32_t> spread_entries(uint32_t entry, int64_t samples, int64_t nodes);

// Wall time of the graph builds' steps in this process, summed over every build since it started
// (builds that overlap in time each add their own): where a retriever's build tail goes (docs/perf.md).
struct GraphBuildSteps {
  double widen = 0;        // the keys widened to float32 for the build (GraphIndex)
  double lists = 0;        // exact top-k lists found here (none when the worker's GPU sent them), key lists
  double project = 0;      // step 2: the lists projected onto the keys, reverse edges, re-pruning
  double connect = 0;      // step 3: every key's own search, its pruned results linked both ways
  double final_prune = 0;  // step 3: one occlusion pass over every list
  double reach = 0;        // step 3: the reachability repair
  double repair = 0;       // step 3b: the query-guided repair (GraphBuildParams::repair_*)
  double finish = 0;       // the CSR, the spanning tree and norms, the 8-bit navigation copy
  int64_t builds = 0;      // graphs built
  int64_t keys = 0, connect_searches = 0;  // their keys, and of them the ones that searched in step 3
};
GraphBuildSteps graph_build_steps();
// One line of them for the logs: "12 graphs: widen 0.1 s, lists 0.0 s, project 1.2 s, ...".
std::string describe_graph_build_steps(const GraphBuildSteps& steps);
// Adds the wall time from its construction to its destruction to one step (thread-safe).
class GraphBuildStepTimer {
 public:
  explicit GraphBuildStepTimer(double GraphBuildSteps::*step);
  ~GraphBuildStepTimer();
  GraphBuildStepTimer(const GraphBuildStepTimer&) = delete;
  GraphBuildStepTimer& operator=(const GraphBuildStepTimer&) = delete;

 private:
  double GraphBuildSteps::*step_;
  std::chrono::steady_clock::time_point start_;
};
// Counts one graph of `keys` keys, `connect_searches` of which searched for connectivity edges.
void count_graph_build(int64_t keys, int64_t connect_searches);

// Steps 2-4. topk: [nq][width] int64 lists (best first; invalid entries ignored). key_topk: optional
// [n_key_lists][key_width] int64, the keys' own lists (GraphBuildParams::key_lists_stride), projected
// after the queries' lists.
// Returns the graph and its entry point (the key with the best score for the mean training query).
struct BuiltGraph {
  GraphCsr csr;
  uint32_t entry = 0;
  std::vector<float> norms;  // [n] squared key norms (keys.dot(i, i)), which the build scored with
};
// keys: the first n rows of one block (no extra rows) of float32, bf16 or f16 (int8 rows: their
// dequantised float32 copy). A 16-bit row scores exactly as its float32 widening (dot.h), so the graph
// is the one the widened copy gives, bit for bit, without the copy's memory and bandwidth.
// key_queries: optional, for connect_query_lists (found by BLAS here when not given).
BuiltGraph build_graph(const KeyRows& keys, int64_t n, const float* queries, int64_t nq, const int64_t* topk,
                       int64_t width, const GraphBuildParams& params, const int64_t* key_topk = nullptr,
                       int64_t n_key_lists = 0, int64_t key_width = 0, KeyQueries key_queries = {});
// The same over [n][dim] float32 keys.
BuiltGraph build_graph(const float* keys, int64_t n, int64_t dim, const float* queries, int64_t nq,
                       const int64_t* topk, int64_t width, const GraphBuildParams& params,
                       const int64_t* key_topk = nullptr, int64_t n_key_lists = 0, int64_t key_width = 0);

}  // namespace ra::retriever
