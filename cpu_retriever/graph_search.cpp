#include "cpu_retriever/graph_search.h"

#include "cpu_retriever/graph_adjacency.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ra::retriever {

GraphCsr to_csr(const std::vector<std::vector<uint32_t>>& lists) {
  GraphCsr csr;
  csr.offsets.resize(lists.size() + 1);
  csr.offsets[0] = 0;
  for (size_t i = 0; i < lists.size(); ++i) csr.offsets[i + 1] = csr.offsets[i] + lists[i].size();
  csr.neighbours.reserve(csr.offsets.back());
  for (const auto& l : lists) csr.neighbours.insert(csr.neighbours.end(), l.begin(), l.end());
  return csr;
}

void SearchScratch::next_epoch() {
  ++epoch;
  if (epoch == 0) {  // wrapped: stale stamps could alias the new epoch
    std::fill(stamp.begin(), stamp.end(), 0u);
    epoch = 1;
  }
}

ScratchPool::Handle ScratchPool::acquire() {
  {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
      SearchScratch* s = free_.back().release();
      free_.pop_back();
      return Handle(s, Deleter{this});
    }
    ++created_;
  }
  return Handle(new SearchScratch(n_), Deleter{this});
}

void ScratchPool::release(SearchScratch* s) {
  std::lock_guard lock(mutex_);
  free_.emplace_back(s);
}

size_t ScratchPool::bytes() const {
  std::lock_guard lock(mutex_);
  return created_ * static_cast<size_t>(n_) * sizeof(uint32_t);
}

namespace {

// Prefetches a key vector of `bytes` bytes into cache.
inline void prefetch_row(const void* row, int64_t bytes) {
  const char* p = static_cast<const char*>(row);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
}

auto by_score_max = [](const Scored& a, const Scored& b) { return better(b, a); };  // max-heap top = best
auto by_score_min = [](const Scored& a, const Scored& b) { return better(a, b); };  // min-heap top = worst

// beam_search for keys of element type E (one instantiation per type keeps the switch off the loop)
// over a Graph with nodes() and out(i) (GraphCsr or GraphAdjacency).
template <typename E, typename Graph>
int beam_search_rows(const KeyRows& keys, const Graph& csr, std::span<const uint32_t> entries, const float* q,
                     int ef, int keep, SearchScratch& s, SearchStats* stats) {
  if (s.stamp.size() < static_cast<size_t>(csr.nodes())) s.stamp.resize(static_cast<size_t>(csr.nodes()), 0u);
  s.next_epoch();
  const int64_t dim = keys.dim;
  const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(typename E::T));
  s.candidates.clear();
  s.pool.clear();
  s.results.clear();
  const bool separate = keep > ef;
  int64_t dc = 0, hops = 0;
  if (csr.nodes() == 0 || ef <= 0) return 0;

  // Offers a scored node to the pool; a node that enters the pool also becomes a candidate.
  auto offer = [&](const Scored c) {
    ++dc;
    bool filling = false;  // the answer is still short of `keep` nodes: this one must be expanded too
    if (separate) {
      if (static_cast<int>(s.results.size()) < keep) {
        filling = true;
        s.results.push_back(c);
        std::push_heap(s.results.begin(), s.results.end(), by_score_min);
      } else if (better(c, s.results.front())) {
        std::pop_heap(s.results.begin(), s.results.end(), by_score_min);
        s.results.back() = c;
        std::push_heap(s.results.begin(), s.results.end(), by_score_min);
      }
    }
    if (static_cast<int>(s.pool.size()) < ef) {
      s.pool.push_back(c);
      std::push_heap(s.pool.begin(), s.pool.end(), by_score_min);
    } else if (better(c, s.pool.front())) {
      std::pop_heap(s.pool.begin(), s.pool.end(), by_score_min);
      s.pool.back() = c;
      std::push_heap(s.pool.begin(), s.pool.end(), by_score_min);
    } else if (!filling) {
      return;
    }
    s.candidates.push_back(c);
    std::push_heap(s.candidates.begin(), s.candidates.end(), by_score_max);
  };
  // Scores the unvisited nodes of ids and offers them in list order. All of them are prefetched first
  // (their ids are known together, so their rows load in parallel), then scored four at a time
  // (independent add chains, dot.h), which gives exactly what scoring them one by one does.
  auto visit_all = [&](std::span<const uint32_t> ids) {
    s.group.fresh.clear();
    for (const uint32_t v : ids) {
      if (s.stamp[v] == s.epoch) continue;
      s.stamp[v] = s.epoch;
      s.group.fresh.push_back(v);
      prefetch_row(keys.row_as<E>(v), row_bytes);
    }
    const std::vector<uint32_t>& batch = s.group.fresh;
    const size_t count = batch.size();
    size_t j = 0;
    for (; j + 4 <= count; j += 4) {
      const typename E::T* rows[4] = {keys.row_as<E>(batch[j]), keys.row_as<E>(batch[j + 1]),
                                      keys.row_as<E>(batch[j + 2]), keys.row_as<E>(batch[j + 3])};
      float scores[4];
      dot_row_x4<E>(q, rows, dim, scores);
      for (int r = 0; r < 4; ++r) offer({scores[r], batch[j + r]});
    }
    for (; j < count; ++j) offer({dot_row<E>(q, keys.row_as<E>(batch[j]), dim), batch[j]});
  };
  visit_all(entries);

  while (!s.candidates.empty()) {
    std::pop_heap(s.candidates.begin(), s.candidates.end(), by_score_max);
    const Scored cur = s.candidates.back();
    s.candidates.pop_back();
    // Stop once no candidate can enter the full beam, unless the answer still lacks `keep` nodes
    // (a narrow beam on a sparse graph can converge before scoring k keys).
    if (static_cast<int>(s.pool.size()) >= ef && better(s.pool.front(), cur) &&
        (!separate || static_cast<int>(s.results.size()) >= keep)) {
      break;
    }
    ++hops;
    visit_all(csr.out(cur.id));
  }
  if (separate) s.pool.swap(s.results);
  std::sort(s.pool.begin(), s.pool.end(), better);
  if (stats) {
    stats->distance_computations += dc;
    stats->hops += hops;
  }
  return static_cast<int>(s.pool.size());
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
  if (s.stamp.size() < static_cast<size_t>(graph.nodes())) s.stamp.resize(static_cast<size_t>(graph.nodes()), 0u);
  s.next_epoch();
  const int64_t dim = keys.dim;
  const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(typename E::T));
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
        if (static_cast<int>(res.size()) < keep) {
          useful = true;
          res.push_back(c);
          std::push_heap(res.begin(), res.end(), by_score_min);
          if (static_cast<int>(res.size()) == keep) --short_answers;
        } else if (better(c, res.front())) {
          std::pop_heap(res.begin(), res.end(), by_score_min);
          res.back() = c;
          std::push_heap(res.begin(), res.end(), by_score_min);
        }
      }
      auto& pool = g.pools[h];
      if (static_cast<int>(pool.size()) < ef) {
        useful = true;
        pool.push_back(c);
        std::push_heap(pool.begin(), pool.end(), by_score_min);
      } else if (better(c, pool.front())) {
        useful = true;
        std::pop_heap(pool.begin(), pool.end(), by_score_min);
        pool.back() = c;
        std::push_heap(pool.begin(), pool.end(), by_score_min);
      }
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
      if (s.stamp[v] == s.epoch) continue;
      s.stamp[v] = s.epoch;
      g.fresh.push_back(v);
      prefetch_row(keys.row_as<E>(v), row_bytes);
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
  with_kv_elem(keys.dtype, [&](auto e) {
    beam_search_group_rows<decltype(e)>(keys, graph, entries, qs, nq, ef, keep, scratch, stats);
  });
}

int beam_search(const KeyRows& keys, const GraphCsr& csr, std::span<const uint32_t> entries, const float* q,
                int ef, int keep, SearchScratch& scratch, SearchStats* stats) {
  return with_kv_elem(keys.dtype, [&](auto e) {
    return beam_search_rows<decltype(e)>(keys, csr, entries, q, ef, keep, scratch, stats);
  });
}

int beam_search(const KeyRows& keys, const GraphAdjacency& graph, std::span<const uint32_t> entries, const float* q,
                int ef, int keep, SearchScratch& scratch, SearchStats* stats) {
  return with_kv_elem(keys.dtype, [&](auto e) {
    return beam_search_rows<decltype(e)>(keys, graph, entries, q, ef, keep, scratch, stats);
  });
}

}  // namespace ra::retriever
