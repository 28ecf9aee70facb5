#pragma once
// Building blocks shared by graph build and graph search: the compact adjacency (CSR), the inner
// product, per-search scratch (a visited bitmap + beam heaps), and the best-first beam search itself. Internal to cpu_retriever; the public type is GraphIndex.

#include "cpu_retriever/dot.h"
#include "cpu_retriever/key_index.h"
#include "cpu_retriever/ranking.h"

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace ra::retriever {

// Directed graph over node ids [0, n): the out-neighbours of node i are
// neighbours[offsets[i] .. offsets[i + 1]). offsets: [n + 1] uint64, neighbours: [edges] uint32.
struct GraphCsr {
  std::vector<uint64_t> offsets;
  std::vector<uint32_t> neighbours;

  int64_t nodes() const { return offsets.empty() ? 0 : static_cast<int64_t>(offsets.size()) - 1; }
  std::span<const uint32_t> out(int64_t i) const {
    return {neighbours.data() + offsets[i], neighbours.data() + offsets[i + 1]};
  }
  // Loads a search will make soon (beam search: the next node to expand): i's offsets, i's list.
  void prefetch_record(int64_t i) const { __builtin_prefetch(offsets.data() + i); }
  void prefetch_out(int64_t i) const { __builtin_prefetch(neighbours.data() + offsets[i]); }
  size_t bytes() const { return offsets.size() * sizeof(uint64_t) + neighbours.size() * sizeof(uint32_t); }
  bool operator==(const GraphCsr&) const = default;
};

GraphCsr to_csr(const std::vector<std::vector<uint32_t>>& lists, int threads = 1);  // threads: an OpenMP team

class GraphAdjacency;  // graph_adjacency.h: the growing adjacency of a GraphIndex

// A scored candidate: score = q · k_id (higher is better).
struct Scored {
  float score;
  uint32_t id;
};

// Working state of a grouped search (beam_search_group) beyond the shared visited set: per query its
// beam and answer heaps, and the shared frontier. Candidate c's per-query scores are
// scores[c.slot * queries ..]. Reused across searches.
struct GroupScratch {
  struct Candidate {
    float priority;  // max over the queries of q_h · k / |q_h|
    uint32_t id;
    uint32_t slot;
  };
  std::vector<std::vector<Scored>> pools;    // [queries] min-heaps: each query's best ef
  std::vector<std::vector<Scored>> results;  // [queries] min-heaps: each query's best keep (keep > ef)
  std::vector<Candidate> candidates;         // max-heap by priority
  std::vector<float> scores;                 // [slots][queries]
  std::vector<uint32_t> fresh;               // one hop's unvisited neighbours
  std::vector<float> fresh_scores;           // [fresh][queries]
};

// The visited set of one search: one bit per node, so a graph of 128K nodes needs 16 KB, which stays
// in a core's L1/L2 across searches (per-node uint32 stamps took 512 KB per graph and thread, and their
// misses were a quarter of a decode search's time: bench/search). The bits a search set are cleared
// by the next begin(), from the list of nodes it marked, so clearing costs O(nodes visited), not O(n).
class VisitedSet {
 public:
  // Starts a search over nodes [0, n): clears the last search's marks and grows to n.
  void begin(int64_t n) {
    for (const uint32_t v : marked_) bits_[v >> 6] = 0;
    marked_.clear();
    const auto words = static_cast<size_t>((n + 63) / 64);
    if (bits_.size() < words) bits_.resize(words, 0);
  }
  // Marks node v; returns whether it was already marked.
  bool test_and_set(uint32_t v) {
    uint64_t& w = bits_[v >> 6];
    const uint64_t bit = uint64_t{1} << (v & 63);
    if (w & bit) return true;
    if (w == 0) marked_.push_back(v);  // the word's first mark: begin() clears it
    w |= bit;
    return false;
  }
  size_t bytes() const { return bits_.capacity() * sizeof(uint64_t) + marked_.capacity() * sizeof(uint32_t); }

 private:
  std::vector<uint64_t> bits_;
  std::vector<uint32_t> marked_;  // one node per word with a mark
};

// Scratch of one search: the visited set and the beam heaps. Reused across searches, so the steady
// state allocates nothing.
struct SearchScratch {
  SearchScratch() = default;
  explicit SearchScratch(int64_t n) { visited.begin(n); }

  VisitedSet visited;
  std::vector<Scored> candidates;  // max-heap by score: nodes still to expand
  std::vector<Scored> pool;        // min-heap by score: the best ef nodes found so far
  std::vector<Scored> results;     // min-heap by score: the best `keep` nodes scored (when keep > ef)
  std::vector<Scored> merged;      // result assembly (graph + flat tail)
  std::vector<uint32_t> entries;   // the index's entries plus a search's seeds
  std::vector<float> scaled_queries;  // queries scaled for an 8-bit navigation copy (navigation_keys.h)
  GroupScratch group;              // beam_search_group only
};

// The calling thread's scratch number slot (0 to 7), for searches that do not nest (GraphIndex's
// searches and merges; slots 1.. for beam_search_interleaved): per thread rather than per graph and
// thread, so its visited bits and heaps stay in the core's cache from one graph's search to the next.
inline constexpr int kThreadScratchSlots = 8;
SearchScratch& thread_search_scratch(int slot = 0);

// Key vectors of graph nodes, in up to two row blocks of one element type: node v < n_base is row v of
// base, node v >= n_base is row v - n_base of extra (keys merged into the graph after its build).
// base: [n_base] rows, extra: [nodes - n_base] rows of dim elements of dtype (kv_dtype.h; an int8 KV
// row also carries its scale: row_bytes). Scores widen 16-bit rows exactly (dot.h), so a graph over
// bf16 rows scores what one over their widened float32 copy does; int8 KV rows score as attention
// scores them (dot_q8.h).
struct KeyRows {
  const void* base = nullptr;
  int64_t n_base = 0;
  const void* extra = nullptr;
  int64_t dim = 0;
  KvDtype dtype = KvDtype::kF32;

  template <typename E>
  const typename E::T* row_as(uint32_t v) const {
    return static_cast<int64_t>(v) < n_base ? row_at<E>(base, v, dim)
                                            : row_at<E>(extra, static_cast<int64_t>(v) - n_base, dim);
  }
  const void* row_data(uint32_t v) const {
    return with_search_elem(dtype, [&](auto e) -> const void* { return row_as<decltype(e)>(v); });
  }
  // q: [dim] float32 · key v (navigation rows: a scaled query · v's code).
  float score(const float* q, uint32_t v) const {
    return with_search_elem(dtype, [&](auto e) {
      using E = decltype(e);
      return dot_row<E>(q, row_as<E>(v), dim);
    });
  }
  // Key a · key b.
  float dot(uint32_t a, uint32_t b) const {
    return with_row_elem(dtype, [&](auto e) {
      using E = decltype(e);
      return dot_rows<E>(row_as<E>(a), row_as<E>(b), dim);
    });
  }
  // Key v widened to float32: out [dim].
  void widen(uint32_t v, float* out) const { widen_row(dtype, row_data(v), dim, out); }
  // Whether key a · key b equals score(a widened, b) bit for bit (float32 and 16-bit rows: dot.h widens
  // exactly, in one order), so that scores() of a widened key can stand for dot. Not so for int8 KV rows.
  bool dot_is_widened_score() const { return dtype != KvDtype::kQ8 && dtype != KvDtype::kI8; }
  // out[i] = score(a, ids[i]) for i < count: four rows at a time (dot_row_x4), independent add chains
  // instead of one row's, so a pruning pass scoring a key against many is not bound by add latency.
  void scores(const float* a, const uint32_t* ids, size_t count, float* out) const {
    with_search_elem(dtype, [&](auto e) {
      using E = decltype(e);
      size_t i = 0;
      for (; i + 4 <= count; i += 4) {
        const typename E::T* r[4] = {row_as<E>(ids[i]), row_as<E>(ids[i + 1]), row_as<E>(ids[i + 2]),
                                     row_as<E>(ids[i + 3])};
        dot_row_x4<E>(a, r, dim, out + i);
      }
      for (; i < count; ++i) out[i] = dot_row<E>(a, row_as<E>(ids[i]), dim);
    });
  }
  // out[i] = score(wide[i], v) for i < count, with wide[i] the widened copy of another key s_i: v's row
  // is read once for four of them, and each score is bitwise scores(v widened, {s_i}) (dot_widened_x4).
  // Only where dot_is_widened_score().
  void scores_widened(uint32_t v, const float* const* wide, size_t count, float* out) const {
    with_kv_elem(dtype, [&](auto e) {  // float32 and 16-bit rows only
      using E = decltype(e);
      const typename E::T* row = row_as<E>(v);
      size_t i = 0;
      for (; i + 4 <= count; i += 4) dot_widened_x4<E>(row, wide + i, dim, out + i);
      for (; i < count; ++i) out[i] = dot_row<E>(wide[i], row, dim);
    });
  }
};

// Best-first beam search over csr from the entry nodes (all scored and seeded into the beam), scoring
// nodes by q · keys[id] (q: [dim] float32).
// The pool keeps the best ef nodes; the search stops when the best unexpanded candidate cannot enter a
// full pool. The answer is the best max(ef, keep) of every node scored: with keep > ef a separate
// result heap collects them, so a narrow beam (cheap navigation) still returns keep results; the keys
// near the query it scores on the way are exactly the ones a top-k needs (docs/retrieval.md).
// Leaves the answer in scratch.pool sorted best first (score desc, id asc) and returns its size.
// Adds distance computations and hops to *stats when non-null.
int beam_search(const KeyRows& keys, const GraphCsr& csr, std::span<const uint32_t> entries, const float* q,
                int ef, int keep, SearchScratch& scratch, SearchStats* stats);
// The same over a GraphAdjacency (the caller holds its owner's lock against the writer). expand > 1
// (at most 4): each step takes the best `expand` candidates still in the beam together, so their lists
// and their neighbours' rows load in parallel; not strictly best-first, so not the same answer as 1.
int beam_search(const KeyRows& keys, const GraphAdjacency& graph, std::span<const uint32_t> entries, const float* q,
                int ef, int keep, SearchScratch& scratch, SearchStats* stats, int expand = 1);

// Best-first beam search shared by nq queries (qs: [nq][dim] float32; e.g. the query heads of one GQA
// group on their kv head's graph): one visited set and one frontier, every node reached fetched once and
// scored for every query. Each query keeps its own beam of ef and its own answer of max(ef, keep) as in
// beam_search. The frontier is ordered by the node's best normalised score, max_h q_h · k / |q_h| (the
// key's norm times its best cosine: the heads' query norms differ, a key's norm is the same for all); a
// popped node is expanded only while it is in some query's beam (or some answer is still short of
// keep), and the search stops once no remaining candidate could enter any query's full beam: for every
// h, |q_h| · priority <= the worst score in h's beam. A hop's unvisited neighbours are all prefetched
// before the first is scored. Leaves query h's answer in scratch.group.pools[h], sorted best first
// (score desc, id asc). Adds distance computations (one per node and query) and hops to *stats.
void beam_search_group(const KeyRows& keys, const GraphAdjacency& graph, std::span<const uint32_t> entries,
                       const float* qs, int nq, int ef, int keep, SearchScratch& scratch, SearchStats* stats);

// n <= 8 independent beam searches over one graph, stepped in turn on the calling thread so that the
// memory loads of each (the next node's record and list, its neighbours' rows) are in flight while the
// others score: query i (qs + i * dim) from entries[i] with scratch[i] (distinct), each exactly what
// beam_search gives it. found[i]: the size of query i's answer in scratch[i]->pool. Adds every
// search's work to *stats.
void beam_search_interleaved(const KeyRows& keys, const GraphAdjacency& graph,
                             std::span<const std::span<const uint32_t>> entries, const float* qs, int n, int ef,
                             int keep, std::span<SearchScratch* const> scratch, int* found, SearchStats* stats,
                             int expand = 1);
// The same over a GraphCsr (the build's frozen snapshots), one node per step.
void beam_search_interleaved(const KeyRows& keys, const GraphCsr& csr,
                             std::span<const std::span<const uint32_t>> entries, const float* qs, int n, int ef,
                             int keep, std::span<SearchScratch* const> scratch, int* found, SearchStats* stats);

// The same over one float32 key block (keys: [csr.nodes()][dim]), answering the best ef.
inline int beam_search(const float* keys, int64_t dim, const GraphCsr& csr, std::span<const uint32_t> entries,
                       const float* q, int ef, SearchScratch& scratch, SearchStats* stats) {
  return beam_search(KeyRows{keys, csr.nodes(), nullptr, dim}, csr, entries, q, ef, 0, scratch, stats);
}

}  // namespace ra::retriever
