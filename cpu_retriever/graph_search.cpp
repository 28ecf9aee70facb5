#include "cpu_retriever/graph_search.h"

#include "cpu_retriever/graph_adjacency.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

namespace ra::retriever {

GraphCsr to_csr(const std::vector<std::vector<uint32_t>>& lists, int threads) {
  GraphCsr csr;
  csr.offsets.resize(lists.size() + 1);
  csr.offsets[0] = 0;
  for (size_t i = 0; i < lists.size(); ++i) csr.offsets[i + 1] = csr.offsets[i] + lists[i].size();
  csr.neighbours.resize(csr.offsets.back());
  const auto n = static_cast<int64_t>(lists.size());
#pragma omp parallel for schedule(static, 4096) num_threads(std::max(1, threads)) if (threads > 1 && n > 4096)
  for (int64_t i = 0; i < n; ++i) std::copy(lists[i].begin(), lists[i].end(), csr.neighbours.begin() + csr.offsets[i]);
  return csr;
}

SearchScratch& thread_search_scratch(int slot) {
  RA_REQUIRE(slot >= 0 && slot < kThreadScratchSlots, "search scratch slot {} (0 to {})", slot,
             kThreadScratchSlots - 1);
  thread_local SearchScratch scratch[kThreadScratchSlots];
  return scratch[slot];
}

namespace {

// Prefetches a key vector of `bytes` bytes into cache (an int8 row of dim + 4 bytes may end in a line
// its first byte's stride does not reach: its last byte is prefetched too).
inline void prefetch_row(const void* row, int64_t bytes) {
  const char* p = static_cast<const char*>(row);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
  if (bytes % 64 != 0) __builtin_prefetch(p + bytes - 1, 0, 3);
}

auto by_score_max = [](const Scored& a, const Scored& b) { return better(b, a); };  // max-heap top = best
auto by_score_min = [](const Scored& a, const Scored& b) { return better(a, b); };  // min-heap top = worst

// Offers c to `best`, a min-heap of at most cap nodes (its top the worst kept): true when c entered.
bool offer_to_best(std::vector<Scored>& best, const Scored c, int cap) {
  if (static_cast<int>(best.size()) < cap) {
    best.push_back(c);
    std::push_heap(best.begin(), best.end(), by_score_min);
    return true;
  }
  if (!better(c, best.front())) return false;
  std::pop_heap(best.begin(), best.end(), by_score_min);
  best.back() = c;
  std::push_heap(best.begin(), best.end(), by_score_min);
  return true;
}

// One beam search (beam_search's contract) as a walker that advances a hop at a time, so that one
// thread can step several independent searches in turn (beam_search_interleaved): while one walker
// scores the rows it prefetched, the others' loads are in flight. Keys of element type E (one
// instantiation per type keeps the switch off the loop) over a Graph with nodes(), out(i),
// prefetch_record(i) and prefetch_out(i) (GraphCsr or GraphAdjacency).
template <typename E, typename Graph>
class BeamWalker {
 public:
  // expand: nodes taken per step (1 = strict best-first; more: the best `expand` candidates left, their
  // lists and rows loaded together: fewer dependent rounds per search for a few more rows scored).
  BeamWalker(const KeyRows& keys, const Graph& graph, const float* q, int ef, int keep, SearchScratch& s,
             int expand = 1)
      : keys_(keys), graph_(graph), q_(q), ef_(ef), keep_(keep), expand_(std::clamp(expand, 1, kMaxExpand)),
        separate_(keep > ef), s_(s) {}

  // Marks and prefetches the unvisited entries; false when there is nothing to search.
  bool start(std::span<const uint32_t> entries) {
    s_.visited.begin(graph_.nodes());
    s_.candidates.clear();
    s_.pool.clear();
    s_.results.clear();
    s_.group.fresh.clear();
    if (graph_.nodes() == 0 || ef_ <= 0) return false;
    gather(entries);
    return true;
  }
  // Scores the gathered rows four at a time (independent add chains, dot.h: exactly what scoring them
  // one by one gives; a last group of one to three repeats its last row rather than fall back to the
  // single row's latency-bound chain), offers them in list order, and prefetches the record of the
  // next node to expand.
  void score() {
    const std::vector<uint32_t>& batch = s_.group.fresh;
    const size_t count = batch.size();
    for (size_t j = 0; j < count; j += 4) {
      const size_t last = std::min(j + 3, count - 1);
      const typename E::T* rows[4];
      for (size_t r = 0; r < 4; ++r) rows[r] = keys_.row_as<E>(batch[std::min(j + r, last)]);
      float scores[4];
      dot_row_x4<E>(q_, rows, keys_.dim, scores);
      for (size_t r = 0; j + r <= last; ++r) offer({scores[r], batch[j + r]});
    }
    // The next node to expand is the heap's top; with expand > 1 the next ones are among its children.
    const size_t ahead = std::min(s_.candidates.size(), expand_ == 1 ? size_t{1} : size_t{3});
    for (size_t i = 0; i < ahead; ++i) graph_.prefetch_record(s_.candidates[i].id);
  }
  // Pops the best candidate (up to `expand` of them); false once no candidate can enter the full beam
  // (unless the answer still lacks `keep` nodes: a narrow beam on a sparse graph can converge before
  // scoring k keys). Otherwise prefetches the candidates' neighbour lists for expand().
  bool next() {
    taken_ = 0;
    while (taken_ < expand_ && !s_.candidates.empty()) {
      std::pop_heap(s_.candidates.begin(), s_.candidates.end(), by_score_max);
      const Scored cur = s_.candidates.back();
      s_.candidates.pop_back();
      if (static_cast<int>(s_.pool.size()) >= ef_ && better(s_.pool.front(), cur) &&
          (!separate_ || static_cast<int>(s_.results.size()) >= keep_)) {
        break;  // cur and every candidate after it are out of the beam (taken_ == 0: the search ends)
      }
      ++hops_;
      current_[taken_++] = cur.id;
      graph_.prefetch_out(cur.id);
    }
    return taken_ > 0;
  }
  // Marks and prefetches the current nodes' unvisited neighbours.
  void expand() {
    s_.group.fresh.clear();
    for (int i = 0; i < taken_; ++i) gather(graph_.out(current_[i]));
  }

  // The answer in s.pool, best first; returns its size.
  int finish(SearchStats* stats) {
    if (separate_) s_.pool.swap(s_.results);
    std::sort(s_.pool.begin(), s_.pool.end(), better);
    if (stats) {
      stats->distance_computations += dc_;
      stats->hops += hops_;
    }
    return static_cast<int>(s_.pool.size());
  }

 private:
  // Appends ids' unvisited nodes to the batch; all of their rows are prefetched before the first is
  // scored: their ids are known together, so their rows load in parallel.
  void gather(std::span<const uint32_t> ids) {
    const auto stride = static_cast<int64_t>(row_bytes<E>(keys_.dim));
    for (const uint32_t v : ids) {
      if (s_.visited.test_and_set(v)) continue;
      s_.group.fresh.push_back(v);
      prefetch_row(keys_.row_as<E>(v), stride);
    }
  }
  // Offers a scored node to the pool; a node that enters the pool also becomes a candidate.
  void offer(const Scored c) {
    ++dc_;
    bool filling = false;  // the answer is still short of `keep` nodes: this one must be expanded too
    if (separate_) {
      filling = static_cast<int>(s_.results.size()) < keep_;
      offer_to_best(s_.results, c, keep_);
    }
    if (!offer_to_best(s_.pool, c, ef_) && !filling) return;
    s_.candidates.push_back(c);
    std::push_heap(s_.candidates.begin(), s_.candidates.end(), by_score_max);
  }

  const KeyRows& keys_;
  const Graph& graph_;
  const float* q_;
  static constexpr int kMaxExpand = 4;
  int ef_, keep_, expand_;
  bool separate_;
  SearchScratch& s_;
  uint32_t current_[kMaxExpand] = {};
  int taken_ = 0;
  int64_t dc_ = 0, hops_ = 0;
};

template <typename E, typename Graph>
int beam_search_rows(const KeyRows& keys, const Graph& graph, std::span<const uint32_t> entries, const float* q,
                     int ef, int keep, SearchScratch& s, SearchStats* stats, int expand = 1) {
  BeamWalker<E, Graph> w(keys, graph, q, ef, keep, s, expand);
  if (!w.start(entries)) return 0;
  w.score();
  while (w.next()) {
    w.expand();
    w.score();
  }
  return w.finish(stats);
}

// n independent searches stepped in turn on this thread. Each phase of a walker issues loads that the
// next phase of the same walker consumes, and the other walkers' phases run in between: the record of
// the next node (prefetched by score), its neighbour list (by next), its neighbours' rows (by expand).
template <typename E, typename Graph>
void beam_search_interleaved_rows(const KeyRows& keys, const Graph& graph,
                                  std::span<const std::span<const uint32_t>> entries, const float* qs, int n, int ef,
                                  int keep, std::span<SearchScratch* const> scratch, int* found, SearchStats* stats,
                                  int expand) {
  using Walker = BeamWalker<E, Graph>;
  constexpr int kMax = kThreadScratchSlots;
  RA_REQUIRE(n >= 1 && n <= kMax, "beam search: {} interleaved searches (1 to {})", n, kMax);
  std::optional<Walker> w[kMax];
  bool live[kMax];
  int left = 0;
  for (int i = 0; i < n; ++i) {
    w[i].emplace(keys, graph, qs + i * keys.dim, ef, keep, *scratch[i], expand);
    live[i] = w[i]->start(entries[i]);
    left += live[i] ? 1 : 0;
  }
  while (left > 0) {
    for (int i = 0; i < n; ++i) {
      if (live[i]) w[i]->score();
    }
    for (int i = 0; i < n; ++i) {
      if (live[i] && !w[i]->next()) {
        live[i] = false;
        --left;
      }
    }
    for (int i = 0; i < n; ++i) {
      if (live[i]) w[i]->expand();
    }
  }
  for (int i = 0; i < n; ++i) {
    found[i] = w[i]->finish(stats);
  }
}

// Scores rows ids against the nq queries qs: out[i * nq + h] = q_h · row ids[i], bitwise dot_row (four
// rows per call: the first query brings them into cache, the others read them from there).
template <typename E>
void score_for_queries(const KeyRows& keys, std::span<const uint32_t> ids, const float* qs, int nq, float* out) {
  const int64_t dim = keys.dim;
  size_t j = 0;
  for (; j + 4 <= ids.size(); j += 4) {
    const typename E::T* rows[4] = {keys.row_as<E>(ids[j]), keys.row_as<E>(ids[j + 1]), keys.row_as<E>(ids[j + 2]),
                                    keys.row_as<E>(ids[j + 3])};
    for (int h = 0; h < nq; ++h) {
      float scores[4];
      dot_row_x4<E>(qs + h * dim, rows, dim, scores);
      for (int r = 0; r < 4; ++r) out[(j + r) * nq + h] = scores[r];
    }
  }
  for (; j < ids.size(); ++j) {
    for (int h = 0; h < nq; ++h) out[j * nq + h] = dot_row<E>(qs + h * dim, keys.row_as<E>(ids[j]), dim);
  }
}

auto by_priority_max = [](const GroupScratch::Candidate& a, const GroupScratch::Candidate& b) {
  return a.priority < b.priority || (a.priority == b.priority && a.id > b.id);  // max-heap top = best
};

template <typename E, typename Graph>
void beam_search_group_rows(const KeyRows& keys, const Graph& graph, std::span<const uint32_t> entries,
                            const float* qs, int nq, int ef, int keep, SearchScratch& s, SearchStats* stats) {
  GroupScratch& g = s.group;
  if (g.pools.size() < static_cast<size_t>(nq)) {
    g.pools.resize(static_cast<size_t>(nq));
    g.results.resize(static_cast<size_t>(nq));
  }
  for (int h = 0; h < nq; ++h) {
    g.pools[h].clear();
    g.results[h].clear();
  }
  g.candidates.clear();
  g.scores.clear();
  if (graph.nodes() == 0 || ef <= 0 || nq <= 0) return;
  s.visited.begin(graph.nodes());
  const int64_t dim = keys.dim;
  const auto stride = static_cast<int64_t>(row_bytes<E>(dim));
  const bool separate = keep > ef;
  // |q_h| and 1 / |q_h| (a zero query ranks by raw score: its scores are all zero anyway).
  float norm[8], inv_norm[8];
  std::vector<float> norm_heap, inv_heap;
  float* qn = norm;
  float* qi = inv_norm;
  if (nq > 8) {
    norm_heap.resize(static_cast<size_t>(nq));
    inv_heap.resize(static_cast<size_t>(nq));
    qn = norm_heap.data();
    qi = inv_heap.data();
  }
  for (int h = 0; h < nq; ++h) {
    const float n2 = dot_f32(qs + h * dim, qs + h * dim, dim);
    qn[h] = n2 > 0.f ? std::sqrt(n2) : 1.f;
    qi[h] = 1.f / qn[h];
  }
  int64_t dc = 0, hops = 0;
  int short_answers = separate ? nq : 0;  // queries whose answer heap holds fewer than keep nodes

  // Offers node v with its scores sv[nq] to every query; a node that enters some beam (or some short
  // answer) becomes a candidate.
  auto offer = [&](uint32_t v, const float* sv) {
    bool useful = false;
    float priority = -std::numeric_limits<float>::infinity();
    for (int h = 0; h < nq; ++h) {
      const Scored c{sv[h], v};
      priority = std::max(priority, sv[h] * qi[h]);
      if (separate) {
        auto& res = g.results[h];
        const bool short_answer = static_cast<int>(res.size()) < keep;
        offer_to_best(res, c, keep);
        if (short_answer) {
          useful = true;
          if (static_cast<int>(res.size()) == keep) --short_answers;
        }
      }
      if (offer_to_best(g.pools[h], c, ef)) useful = true;
    }
    if (!useful) return;
    const auto slot = static_cast<uint32_t>(g.scores.size() / static_cast<size_t>(nq));
    g.scores.insert(g.scores.end(), sv, sv + nq);
    g.candidates.push_back({priority, v, slot});
    std::push_heap(g.candidates.begin(), g.candidates.end(), by_priority_max);
  };
  auto visit_all = [&](std::span<const uint32_t> ids) {
    g.fresh.clear();
    for (const uint32_t v : ids) {
      if (s.visited.test_and_set(v)) continue;
      g.fresh.push_back(v);
      prefetch_row(keys.row_as<E>(v), stride);
    }
    g.fresh_scores.resize(g.fresh.size() * static_cast<size_t>(nq));
    score_for_queries<E>(keys, g.fresh, qs, nq, g.fresh_scores.data());
    dc += static_cast<int64_t>(g.fresh.size()) * nq;
    for (size_t i = 0; i < g.fresh.size(); ++i) offer(g.fresh[i], g.fresh_scores.data() + i * static_cast<size_t>(nq));
  };
  visit_all(entries);

  while (!g.candidates.empty()) {
    std::pop_heap(g.candidates.begin(), g.candidates.end(), by_priority_max);
    const GroupScratch::Candidate cur = g.candidates.back();
    g.candidates.pop_back();
    const float* sc = g.scores.data() + static_cast<size_t>(cur.slot) * static_cast<size_t>(nq);
    bool live = short_answers > 0;  // some answer still needs nodes: expand whatever comes
    bool reachable = live;          // some candidate left (priority <= cur's) could still enter a beam
    for (int h = 0; h < nq && !(live && reachable); ++h) {
      const auto& pool = g.pools[h];
      if (static_cast<int>(pool.size()) < ef) {
        live = reachable = true;
        break;
      }
      if (!better(pool.front(), Scored{sc[h], cur.id})) live = true;  // cur is still in h's beam
      if (cur.priority * qn[h] > pool.front().score) reachable = true;
    }
    if (!reachable) break;
    if (!live) continue;
    ++hops;
    visit_all(graph.out(cur.id));
  }
  for (int h = 0; h < nq; ++h) {
    if (separate) g.pools[h].swap(g.results[h]);
    std::sort(g.pools[h].begin(), g.pools[h].end(), better);
  }
  if (stats) {
    stats->distance_computations += dc;
    stats->hops += hops;
  }
}

}  // namespace

void beam_search_group(const KeyRows& keys, const GraphAdjacency& graph, std::span<const uint32_t> entries,
                       const float* qs, int nq, int ef, int keep, SearchScratch& scratch, SearchStats* stats) {
  with_search_elem(keys.dtype, [&](auto e) {
    beam_search_group_rows<decltype(e)>(keys, graph, entries, qs, nq, ef, keep, scratch, stats);
  });
}

namespace {
template <typename Graph>
void interleaved(const KeyRows& keys, const Graph& graph, std::span<const std::span<const uint32_t>> entries,
                 const float* qs, int n, int ef, int keep, std::span<SearchScratch* const> scratch, int* found,
                 SearchStats* stats, int expand) {
  RA_REQUIRE(entries.size() >= static_cast<size_t>(n) && scratch.size() >= static_cast<size_t>(n),
             "beam search: {} interleaved searches with {} entry lists and {} scratches", n, entries.size(),
             scratch.size());
  with_search_elem(keys.dtype, [&](auto e) {
    beam_search_interleaved_rows<decltype(e)>(keys, graph, entries, qs, n, ef, keep, scratch, found, stats, expand);
  });
}
}  // namespace

void beam_search_interleaved(const KeyRows& keys, const GraphAdjacency& graph,
                             std::span<const std::span<const uint32_t>> entries, const float* qs, int n, int ef,
                             int keep, std::span<SearchScratch* const> scratch, int* found, SearchStats* stats,
                             int expand) {
  interleaved(keys, graph, entries, qs, n, ef, keep, scratch, found, stats, expand);
}

void beam_search_interleaved(const KeyRows& keys, const GraphCsr& csr,
                             std::span<const std::span<const uint32_t>> entries, const float* qs, int n, int ef,
                             int keep, std::span<SearchScratch* const> scratch, int* found, SearchStats* stats) {
  interleaved(keys, csr, entries, qs, n, ef, keep, scratch, found, stats, 1);
}

int beam_search(const KeyRows& keys, const GraphCsr& csr, std::span<const uint32_t> entries, const float* q,
                int ef, int keep, SearchScratch& scratch, SearchStats* stats) {
  return with_search_elem(keys.dtype, [&](auto e) {
    return beam_search_rows<decltype(e)>(keys, csr, entries, q, ef, keep, scratch, stats);
  });
}

int beam_search(const KeyRows& keys, const GraphAdjacency& graph, std::span<const uint32_t> entries, const float* q,
                int ef, int keep, SearchScratch& scratch, SearchStats* stats, int expand) {
  return with_search_elem(keys.dtype, [&](auto e) {
    return beam_search_rows<decltype(e)>(keys, graph, entries, q, ef, keep, scratch, stats, expand);
  });
}

}  // namespace ra::retriever
