#include "cpu_retriever/graph_search.h"

#include "cpu_retriever/graph_adjacency.h"

#include <algorithm>

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
  // Scores the unvisited nodes of ids and offers them in list order. They are scored four at a time
  // (independent add chains, dot.h), which gives exactly what scoring them one by one does.
  auto visit_all = [&](std::span<const uint32_t> ids) {
    const size_t count = ids.size();
    if (count > 0) prefetch_row(keys.row_as<E>(ids[0]), row_bytes);
    uint32_t batch[4];
    int batched = 0;
    for (size_t j = 0; j < count; ++j) {
      if (j + 1 < count) prefetch_row(keys.row_as<E>(ids[j + 1]), row_bytes);
      const uint32_t v = ids[j];
      if (s.stamp[v] == s.epoch) continue;
      s.stamp[v] = s.epoch;
      batch[batched++] = v;
      if (batched == 4) {
        const typename E::T* rows[4] = {keys.row_as<E>(batch[0]), keys.row_as<E>(batch[1]),
                                        keys.row_as<E>(batch[2]), keys.row_as<E>(batch[3])};
        float scores[4];
        dot_row_x4<E>(q, rows, dim, scores);
        for (int r = 0; r < 4; ++r) offer({scores[r], batch[r]});
        batched = 0;
      }
    }
    for (int r = 0; r < batched; ++r) offer({dot_row<E>(q, keys.row_as<E>(batch[r]), dim), batch[r]});
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

}  // namespace

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
