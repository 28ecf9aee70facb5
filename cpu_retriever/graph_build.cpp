#include "cpu_retriever/graph_build.h"

#include "common/error.h"
#include "cpu_retriever/blas_top_k.h"

#include <omp.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>

namespace ra::retriever {
namespace {

// Per-thread buffers of the pruning steps, so that a list's scoring and pruning allocate nothing but
// the list they return (the build prunes every key's list once or more: malloc was ~6% of it).
struct PruneScratch {
  std::vector<uint32_t> ids;      // a list's candidates, deduplicated
  std::vector<Scored> scored;     // their scores against the pivot
  std::vector<float> wide;        // one key widened to float32
  std::vector<float> row_scores;  // scores of one widened key against many
  std::vector<uint32_t> occluded;
  std::vector<uint32_t> clean;       // a list's pruned part, sorted (prune_ids' clean)
  std::vector<uint32_t> kept_other;  // the kept candidates outside it
  std::vector<float> kept_rows;      // the kept candidates widened, [max_keep][dim]
  std::vector<const float*> kept_wide, other_wide;  // their rows, in kept and kept_other order
};
PruneScratch& prune_scratch() {
  thread_local PruneScratch scratch;
  return scratch;
}

// The ids an earlier prune of the same pivot kept, sorted into `out` for prune_scored's `clean`; none with
// fill_pruned (a filled list holds occluded ids: no such guarantee).
void set_kept_before(std::span<const uint32_t> kept, const GraphBuildParams& gp, std::vector<uint32_t>& out) {
  out.clear();
  if (!gp.fill_pruned) out.assign(kept.begin(), kept.end());
  std::sort(out.begin(), out.end());
}

// Whether a candidate list may repeat ids (the union of several lists) or holds each once (one top
// list, a graph's adjacency): only the first needs the sort that drops duplicates.
enum class Ids { kMayRepeat, kDistinct };

// ids scored against node p (score = p · c) into out, without p and duplicates, in no particular order
// (a pruning pass sorts them itself). ids may be reordered.
void score_candidates(const KeyRows& keys, uint32_t p, std::vector<uint32_t>& ids, Ids kind, std::vector<Scored>& out) {
  if (kind == Ids::kMayRepeat) {  // sorted ids also visit the rows in address order
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  ids.erase(std::remove(ids.begin(), ids.end(), p), ids.end());
  out.resize(ids.size());
  if (keys.dot_is_widened_score()) {  // p widened, then its rows four at a time: the same scores
    PruneScratch& s = prune_scratch();
    s.wide.resize(static_cast<size_t>(keys.dim));
    s.row_scores.resize(ids.size());
    keys.widen(p, s.wide.data());
    keys.scores(s.wide.data(), ids.data(), ids.size(), s.row_scores.data());
    for (size_t i = 0; i < ids.size(); ++i) out[i] = {s.row_scores[i], ids[i]};
  } else {
    for (size_t i = 0; i < ids.size(); ++i) out[i] = {keys.dot(p, ids[i]), ids[i]};
  }
}

std::vector<uint32_t> prune_scored(const KeyRows& keys, const float* norms, uint32_t p, std::vector<Scored>& cands,
                                   int max_keep, const GraphBuildParams& gp, std::span<const uint32_t> clean = {});

// occlusion_prune(p, its candidates ids scored) without the intermediate lists: ids (reordered here)
// scored and pruned in the thread's buffers. clean: ids[0, clean) is a list this rule already made for
// p (with these params, any max_keep), e.g. p's list before edges were appended to it: no two of those
// occlude each other, so only pairs with another candidate are scored (prune_scored). The kept set is
// the one a prune of every pair gives.
std::vector<uint32_t> prune_ids(const KeyRows& keys, const float* norms, uint32_t p, std::vector<uint32_t>& ids,
                                Ids kind, int max_keep, const GraphBuildParams& gp, size_t clean = 0) {
  PruneScratch& scratch = prune_scratch();
  set_kept_before(std::span<const uint32_t>(ids).first(std::min(clean, ids.size())), gp, scratch.clean);
  score_candidates(keys, p, ids, kind, scratch.scored);
  return prune_scored(keys, norms, p, scratch.scored, max_keep, gp, scratch.clean);
}

int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// Runs fn(part, parts) on `threads` threads, one part each: a pass over shared input whose writes
// each part confines to its own nodes (id % parts == part), so no two threads write the same list
// and each list sees its writes in the serial order.
template <typename Fn>
void for_each_part(int threads, const Fn& fn) {
  const int parts = std::max(1, threads);
#pragma omp parallel for schedule(static, 1) num_threads(parts) if (parts > 1)
  for (int part = 0; part < parts; ++part) fn(static_cast<uint32_t>(part), static_cast<uint32_t>(parts));
}

const float* row(const float* m, int64_t dim, int64_t i) { return m + i * dim; }

using Lists = std::vector<std::vector<uint32_t>>;

// Top lists to project: rows lists of width ids each, [rows][width] int64, best first.
struct TopKLists {
  const int64_t* ids;
  int64_t rows;
  int64_t width;
};

// Step 2: projection of the training queries' top lists (and the keys' own, when given) onto the keys,
// then reverse edges, then re-pruning of nodes above M. clean[x]: how many leading ids of x's list the
// occlusion rule made for x (prune_ids' clean; 0 for a list kept whole).
Lists project(const KeyRows& rows, const float* norms, int64_t n, std::span<const TopKLists> sources,
              const GraphBuildParams& gp, int threads, std::vector<uint16_t>& clean) {
  const int M = gp.M;
  Lists pool(static_cast<size_t>(n));  // candidates gathered per pivot, in list order
  // Each thread gathers for its own pivots (id % parts) from every list, so every pool holds its
  // candidates in list order whatever the thread count.
  for_each_part(threads, [&](uint32_t part, uint32_t parts) {
    std::vector<uint32_t> valid;
    for (const TopKLists& src : sources) {
      for (int64_t q = 0; q < src.rows; ++q) {
        const int64_t* list = src.ids + q * src.width;
        valid.clear();
        for (int64_t j = 0; j < src.width; ++j) {
          if (list[j] >= 0 && list[j] < n) valid.push_back(static_cast<uint32_t>(list[j]));
        }
        add_projection_candidates(valid, gp, pool, part, parts);
      }
    }
  });
  Lists adj(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
  for (int64_t p = 0; p < n; ++p) {
    if (pool[p].empty()) continue;
    adj[p] = prune_ids(rows, norms, static_cast<uint32_t>(p), pool[p], Ids::kMayRepeat, M, gp);
    std::vector<uint32_t>().swap(pool[p]);
    clean[p] = static_cast<uint16_t>(adj[p].size());
  }
  Lists rev(static_cast<size_t>(n));
  for_each_part(threads, [&](uint32_t part, uint32_t parts) {
    for (int64_t p = 0; p < n; ++p) {
      for (uint32_t c : adj[p]) {
        if (c % parts == part) rev[c].push_back(static_cast<uint32_t>(p));
      }
    }
  });
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
  for (int64_t c = 0; c < n; ++c) {
    if (rev[c].empty()) continue;
    PruneScratch& scratch = prune_scratch();
    std::vector<uint32_t>& ids = scratch.ids;
    ids.assign(adj[c].begin(), adj[c].end());
    ids.insert(ids.end(), rev[c].begin(), rev[c].end());
    set_kept_before(std::span<const uint32_t>(adj[c]).first(clean[c]), gp, scratch.clean);  // c's pivot list
    std::vector<Scored>& scored = scratch.scored;
    score_candidates(rows, static_cast<uint32_t>(c), ids, Ids::kMayRepeat, scored);
    if (static_cast<int>(scored.size()) > M) {
      adj[c] = prune_scored(rows, norms, static_cast<uint32_t>(c), scored, M, gp, scratch.clean);
      clean[c] = static_cast<uint16_t>(adj[c].size());
    } else {
      std::sort(scored.begin(), scored.end(), better);
      adj[c].clear();
      for (const Scored& s : scored) adj[c].push_back(s.id);
      clean[c] = 0;
    }
  }
  return adj;
}

// Step 4: the key with the best score for the mean training query (key 0 without queries).
uint32_t choose_entry(const KeyRows& keys, int64_t n, const float* queries, int64_t nq, int threads) {
  if (nq == 0) return 0;
  const int64_t dim = keys.dim;
  std::vector<double> acc(static_cast<size_t>(dim), 0.0);
  for (int64_t q = 0; q < nq; ++q) {
    for (int64_t j = 0; j < dim; ++j) acc[j] += row(queries, dim, q)[j];
  }
  std::vector<float> mean(static_cast<size_t>(dim));
  for (int64_t j = 0; j < dim; ++j) mean[j] = static_cast<float>(acc[j] / static_cast<double>(nq));
  // Each thread's best, then the best of those: `better` is a total order, so any team agrees.
  const int team = std::max(1, threads);
  std::vector<Scored> best(static_cast<size_t>(team), Scored{keys.score(mean.data(), 0), 0});
#pragma omp parallel num_threads(team) if (team > 1 && n > 4096)
  {
    Scored& mine = best[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(static)
    for (int64_t i = 1; i < n; ++i) {
      const Scored c{keys.score(mean.data(), static_cast<uint32_t>(i)), static_cast<uint32_t>(i)};
      if (better(c, mine)) mine = c;
    }
  }
  return std::min_element(best.begin(), best.end(), better)->id;
}

// The nodes a flood of csr from root does not reach, in id order; `reached` gets the flood's marks.
std::vector<uint32_t> unreached_from(const GraphCsr& csr, uint32_t root, std::vector<uint8_t>& reached) {
  const auto n = static_cast<size_t>(csr.nodes());
  reached.assign(n, 0);
  std::vector<uint32_t> stack{root};
  reached[root] = 1;
  while (!stack.empty()) {
    const uint32_t u = stack.back();
    stack.pop_back();
    for (uint32_t v : csr.out(u)) {
      if (!reached[v]) {
        reached[v] = 1;
        stack.push_back(v);
      }
    }
  }
  std::vector<uint32_t> out;
  for (size_t v = 0; v < n; ++v) {
    if (!reached[v]) out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

void add_edge_capped(Lists& adj, uint32_t from, uint32_t to, size_t cap) {
  auto& l = adj[from];
  if (l.size() >= cap || from == to) return;
  if (std::find(l.begin(), l.end(), to) == l.end()) l.push_back(to);
}

// Each key of `which` searches snapshot from entry with its own row (widened) as the query, beam ef;
// on_found(i, scratch, got) then sees which[i]'s answer (scratch.pool, got nodes, best first) on the
// thread that searched. A thread steps kBuildInterleave searches in turn (beam_search_interleaved: each
// one's loads in flight while another scores), and every answer is exactly beam_search's.
inline constexpr int kBuildInterleave = 4;
template <typename Fn>
void search_each_key(const KeyRows& keys, const GraphCsr& snapshot, uint32_t entry, std::span<const uint32_t> which,
                     int ef, int threads, int64_t chunk, const Fn& on_found) {
  const int64_t n = snapshot.nodes(), dim = keys.dim;
  const auto groups = static_cast<int64_t>((which.size() + kBuildInterleave - 1) / kBuildInterleave);
#pragma omp parallel num_threads(threads) if (groups > 1)
  {
    std::vector<std::unique_ptr<SearchScratch>> owned;
    SearchScratch* scratch[kBuildInterleave];
    std::span<const uint32_t> entries[kBuildInterleave];
    for (int i = 0; i < kBuildInterleave; ++i) {
      owned.push_back(std::make_unique<SearchScratch>(n));
      scratch[i] = owned.back().get();
      entries[i] = {&entry, 1};
    }
    std::vector<float> queries(static_cast<size_t>(kBuildInterleave * dim));
    int found[kBuildInterleave];
#pragma omp for schedule(dynamic, chunk)
    for (int64_t g = 0; g < groups; ++g) {
      const size_t first = static_cast<size_t>(g) * kBuildInterleave;
      const int count = static_cast<int>(std::min<size_t>(kBuildInterleave, which.size() - first));
      for (int i = 0; i < count; ++i) keys.widen(which[first + i], queries.data() + i * dim);
      beam_search_interleaved(keys, snapshot, {entries, static_cast<size_t>(count)}, queries.data(), count, ef, 0,
                              {scratch, static_cast<size_t>(count)}, found, nullptr);
      for (int i = 0; i < count; ++i) on_found(first + i, *scratch[i], found[i]);
    }
  }
}

// Step 3 with GraphBuildParams::connect_query_lists = T > 0: each connecting key's candidates are the
// top lists of the T training queries that score it best (exact, by BLAS over blocks of connecting
// keys), scored against it and pruned, in place of a search. found[x] as the search gives it.
void connect_from_query_lists(const KeyRows& keys, const float* norms, std::span<const uint32_t> connecting,
                              const float* queries, int64_t nq, const int64_t* topk, int64_t width, int64_t n,
                              KeyQueries given, Lists& found, const GraphBuildParams& p, int threads) {
  constexpr int64_t kBlock = 16384;  // connecting keys per GEMM: bounds the widened rows to 8 MiB at dim 128
  const int64_t dim = keys.dim, m = static_cast<int64_t>(connecting.size());
  const int t = static_cast<int>(std::min<int64_t>({p.connect_query_lists, nq, given ? given.width : nq}));
  std::vector<float> rows(given ? 0 : static_cast<size_t>(std::min(m, kBlock) * dim));
  std::vector<int64_t> best(static_cast<size_t>(std::min(m, kBlock) * t));
  std::vector<float> best_scores(best.size());
  for (int64_t b0 = 0; b0 < m; b0 += kBlock) {
    const int64_t rows_n = std::min(kBlock, m - b0);
    if (given) {  // the first t of each key's given ids
      for (int64_t i = 0; i < rows_n; ++i) {
        const int32_t* ids = given.ids + static_cast<int64_t>(connecting[static_cast<size_t>(b0 + i)]) * given.width;
        for (int j = 0; j < t; ++j) best[static_cast<size_t>(i * t + j)] = ids[j] >= 0 && ids[j] < nq ? ids[j] : -1;
      }
    } else {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
      for (int64_t i = 0; i < rows_n; ++i) keys.widen(connecting[static_cast<size_t>(b0 + i)], rows.data() + i * dim);
      blas_top_k_batch(rows.data(), rows_n, queries, nq, dim, t, best.data(), best_scores.data(), threads);
    }
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads) if (threads > 1)
    for (int64_t i = 0; i < rows_n; ++i) {
      const uint32_t x = connecting[static_cast<size_t>(b0 + i)];
      std::vector<uint32_t>& ids = prune_scratch().ids;
      ids.clear();
      for (int j = 0; j < t; ++j) {
        const int64_t q = best[static_cast<size_t>(i * t + j)];
        if (q < 0) continue;
        for (int64_t c = 0; c < width; ++c) {
          const int64_t id = topk[q * width + c];
          if (id >= 0 && id < n) ids.push_back(static_cast<uint32_t>(id));
        }
      }
      // One training list holds each key once (t == 1, the default): no duplicates to sort out.
      found[x] = prune_ids(keys, norms, x, ids, t == 1 ? Ids::kDistinct : Ids::kMayRepeat, p.M, p);
    }
  }
}

// Step 3: connectivity. The keys the projection left with few in-edges (connect_max_in_degree; -1:
// every key) search the projected graph with their own vectors, or take their best training queries'
// lists (connect_from_query_lists); the pruned results become edges both ways (up to the degree cap).
// The searches run in parallel on a frozen snapshot, the edges are applied in key-id order, so the
// output does not depend on the thread count. Then a BFS from the entry point links every unreached
// node from its best reachable match.
void connect(const KeyRows& keys, const float* norms, int64_t n, Lists& adj, const std::vector<uint16_t>& clean,
             uint32_t entry, const GraphBuildParams& p, int threads, const float* queries, int64_t nq,
             const int64_t* topk, int64_t width, KeyQueries key_queries) {
  const size_t cap = static_cast<size_t>(p.degree_cap > 0 ? p.degree_cap : 2 * p.M);
  const int ef = std::max(p.ef_construction, p.M);
  {
    const GraphBuildStepTimer timer(&GraphBuildSteps::connect);
    const GraphCsr snapshot = to_csr(adj, threads);
    Lists found(static_cast<size_t>(n));
    // With connect_max_in_degree: only the keys the projection left with few in-edges search.
    std::vector<int32_t> in_degree;
    int64_t searches = n;
    if (p.connect_max_in_degree >= 0) {
      in_degree.assign(static_cast<size_t>(n), 0);
      for_each_part(threads, [&](uint32_t part, uint32_t parts) {
        for (const auto& l : adj) {
          for (uint32_t v : l) {
            if (v % parts == part) ++in_degree[v];
          }
        }
      });
      searches = std::count_if(in_degree.begin(), in_degree.end(),
                               [&](int32_t d) { return d <= p.connect_max_in_degree; });
    }
    std::vector<uint32_t> connecting;  // in id order
    connecting.reserve(static_cast<size_t>(searches));
    for (int64_t x = 0; x < n; ++x) {
      if (in_degree.empty() || in_degree[x] <= p.connect_max_in_degree) connecting.push_back(static_cast<uint32_t>(x));
    }
    count_graph_build(n, searches);
    if (p.connect_query_lists > 0 && nq > 0 && topk != nullptr) {
      connect_from_query_lists(keys, norms, connecting, queries, nq, topk, width, n, key_queries, found, p, threads);
    } else {
      search_each_key(keys, snapshot, entry, connecting, ef, threads, 16, [&](size_t i, const SearchScratch& s, int got) {
        const uint32_t x = connecting[i];
        std::vector<Scored> cands;
        cands.reserve(static_cast<size_t>(got));
        for (int j = 0; j < got; ++j) {
          if (s.pool[j].id != x) cands.push_back(s.pool[j]);
        }
        found[x] = prune_scored(keys, norms, x, cands, p.M, p);
      });
    }
    // In key order, as a serial pass would: each thread appends to its own lists (id % parts) only.
    for_each_part(threads, [&](uint32_t part, uint32_t parts) {
      for (int64_t x = 0; x < n; ++x) {
        const auto ux = static_cast<uint32_t>(x);
        for (uint32_t r : found[x]) {
          if (ux % parts == part) add_edge_capped(adj, ux, r, cap);
          if (r % parts == part) add_edge_capped(adj, r, ux, cap);
        }
      }
    });
  }
  // The edges above were appended without pruning against the projected ones: one occlusion pass over
  // every list drops the redundant ones, so each hop scores fewer keys (docs/retrieval.md, third round).
  if (p.final_prune) {
    const GraphBuildStepTimer timer(&GraphBuildSteps::final_prune);
    const KeyRows& rows = keys;
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t x = 0; x < n; ++x) {
      // adj[x] begins with the list project() pruned for x; the edges above were appended after it.
      adj[x] = prune_ids(rows, norms, static_cast<uint32_t>(x), adj[x], Ids::kDistinct, static_cast<int>(cap), p, clean[x]);
    }
  }

  // Reachability repair. Searching the snapshot only returns nodes reachable from the entry in the
  // snapshot, which stay reachable in adj because edges are only ever added. Every node the snapshot
  // leaves unreached gets its best reachable match in parallel first (the searches read the frozen
  // snapshot only); link_unreached then asks for those of them still unreached, in id order, so the
  // graph is the one a serial repair makes.
  const GraphBuildStepTimer timer(&GraphBuildSteps::reach);
  const GraphCsr snapshot = to_csr(adj, threads);
  std::vector<uint8_t> reached;
  const std::vector<uint32_t> lost = unreached_from(snapshot, entry, reached);
  std::vector<uint32_t> source(lost.size(), entry);
  search_each_key(keys, snapshot, entry, lost, ef, threads, 2, [&](size_t i, const SearchScratch& s, int got) {
    if (got > 0) source[i] = s.pool[0].id;  // best reachable match
  });
  // The snapshot is adj: its flood from the entry is link_unreached's first, not done twice.
  link_unreached(
      adj, entry,
      [&](uint32_t u, const std::vector<uint8_t>&) {
        const auto it = std::lower_bound(lost.begin(), lost.end(), u);
        RA_ASSERT(it != lost.end() && *it == u);  // what adj leaves unreached, the snapshot (adj itself) did
        return source[static_cast<size_t>(it - lost.begin())];
      },
      std::move(reached));
}

// Step 3b: query-guided repair (GraphBuildParams::repair_*). Searches run in parallel on a frozen
// snapshot; the proposed edges are applied in query order, so the output does not depend on threads.
void repair(const KeyRows& keys, int64_t n, int64_t dim, Lists& adj, const std::vector<uint32_t>& entries,
            const float* queries, int64_t nq, const int64_t* topk, int64_t width, const GraphBuildParams& p,
            int threads) {
  const size_t cap = static_cast<size_t>((p.degree_cap > 0 ? p.degree_cap : 2 * p.M) + p.repair_extra);
  const int64_t stride = std::max(1, p.repair_stride);
  const int64_t count = (nq + stride - 1) / stride;
  const int64_t take = std::min<int64_t>(width, p.repair_k);
  const GraphCsr snapshot = to_csr(adj);
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> proposals(static_cast<size_t>(count));
#pragma omp parallel num_threads(threads)
  {
    SearchScratch scratch(n);
    std::vector<uint32_t> found, sorted;
#pragma omp for schedule(dynamic, 16)
    for (int64_t s = 0; s < count; ++s) {
      const int64_t qi = s * stride;
      const int got = beam_search(keys, snapshot, entries, row(queries, dim, qi),
                                  p.repair_ef, static_cast<int>(take), scratch, nullptr);
      found.clear();
      for (int i = 0; i < got; ++i) found.push_back(scratch.pool[i].id);
      sorted = found;
      std::sort(sorted.begin(), sorted.end());
      const int64_t* list = topk + qi * width;
      for (int64_t j = 0; j < take && !found.empty(); ++j) {
        if (list[j] < 0 || list[j] >= n) continue;
        const auto c = static_cast<uint32_t>(list[j]);
        if (std::binary_search(sorted.begin(), sorted.end(), c)) continue;
        Scored best{keys.dot(c, found[0]), found[0]};
        for (size_t i = 1; i < found.size(); ++i) {
          const Scored cand{keys.dot(c, found[i]), found[i]};
          if (better(cand, best)) best = cand;
        }
        proposals[s].push_back({best.id, c});
      }
    }
  }
  for (const auto& list : proposals) {
    for (const auto& [from, to] : list) add_edge_capped(adj, from, to, cap);
  }
}

}  // namespace

std::vector<uint32_t> spread_entries(uint32_t entry, int64_t samples, int64_t nodes) {
  std::vector<uint32_t> out{entry};
  samples = std::min(samples, nodes);
  for (int64_t i = 0; i < samples; ++i) out.push_back(static_cast<uint32_t>(i * nodes / samples));
  return out;
}


void link_unreached(std::vector<std::vector<uint32_t>>& adj, uint32_t root,
                    const std::function<uint32_t(uint32_t, const std::vector<uint8_t>&)>& source,
                    std::vector<uint8_t> reached_from_root) {
  const bool flooded = !reached_from_root.empty();
  RA_REQUIRE(!flooded || reached_from_root.size() == adj.size(), "link_unreached: {} marks for {} nodes",
             reached_from_root.size(), adj.size());
  std::vector<uint8_t> reached = flooded ? std::move(reached_from_root) : std::vector<uint8_t>(adj.size(), 0);
  std::vector<uint32_t> stack;
  auto flood = [&](uint32_t from) {
    reached[from] = 1;
    stack.push_back(from);
    while (!stack.empty()) {
      const uint32_t u = stack.back();
      stack.pop_back();
      for (uint32_t v : adj[u]) {
        if (!reached[v]) {
          reached[v] = 1;
          stack.push_back(v);
        }
      }
    }
  };
  if (!flooded) flood(root);
  for (size_t v = 0; v < adj.size(); ++v) {
    if (reached[v]) continue;
    adj[source(static_cast<uint32_t>(v), reached)].push_back(static_cast<uint32_t>(v));  // may exceed the cap
    flood(static_cast<uint32_t>(v));
  }
}

void link_pruned(const KeyRows& keys, const float* norms, std::vector<std::vector<uint32_t>>& adj, uint32_t r,
                 uint32_t x, size_t cap, const GraphBuildParams& gp) {
  auto& l = adj[r];
  if (r == x || std::find(l.begin(), l.end(), x) != l.end()) return;
  l.push_back(x);
  if (l.size() > cap) l = prune_ids(keys, norms, r, l, Ids::kDistinct, static_cast<int>(cap), gp);
}

void project_onto(const KeyRows& keys, const float* norms, std::vector<std::vector<uint32_t>>& adj,
                  const std::vector<std::vector<uint32_t>>& lists, size_t cap, const GraphBuildParams& gp,
                  int threads) {
  const auto total = static_cast<int64_t>(adj.size());
  std::vector<std::vector<uint32_t>> pool(adj.size());
  for (const auto& l : lists) add_projection_candidates(l, gp, pool);
  std::vector<std::vector<uint32_t>> pruned(adj.size());
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
  for (int64_t p = 0; p < total; ++p) {
    if (pool[p].empty()) continue;
    std::vector<uint32_t> ids = adj[p];
    ids.insert(ids.end(), pool[p].begin(), pool[p].end());
    pruned[p] = prune_ids(keys, norms, static_cast<uint32_t>(p), ids, Ids::kMayRepeat, static_cast<int>(cap), gp);
  }
  // All pivots' lists first, then the reverse edges of their new edges, so no reverse edge is
  // overwritten by a pivot list pruned after it was added.
  for (int64_t p = 0; p < total; ++p) {
    if (!pool[p].empty()) std::swap(adj[p], pruned[p]);  // pruned[p] now holds p's old list
  }
  for (int64_t p = 0; p < total; ++p) {
    if (pool[p].empty()) continue;
    const std::vector<uint32_t>& before = pruned[p];
    for (uint32_t c : adj[p]) {
      if (std::find(before.begin(), before.end(), c) == before.end()) {
        link_pruned(keys, norms, adj, c, static_cast<uint32_t>(p), cap, gp);
      }
    }
  }
}

void add_projection_candidates(std::span<const uint32_t> list, const GraphBuildParams& gp,
                               std::vector<std::vector<uint32_t>>& pool, uint32_t part, uint32_t parts) {
  if (list.empty()) return;
  // The nearest key is the pivot of the whole list (RoarGraph's projection).
  if (list[0] % parts == part) {
    for (size_t j = 1; j < list.size(); ++j) {
      if (list[j] != list[0]) pool[list[0]].push_back(list[j]);
    }
  }
  // Further pivots: each of the next best keys gets the rest of the list's head, so keys that many
  // queries retrieve together are linked even when they never rank first (docs/retrieval.md).
  const size_t span = gp.pivot_span > 0 ? static_cast<size_t>(gp.pivot_span) : list.size();
  const size_t head = std::min(list.size(), span);
  const size_t pivots = static_cast<size_t>(std::max(1, gp.pivots));
  for (size_t i = 1; i < std::min(head, pivots); ++i) {
    if (list[i] % parts != part) continue;
    for (size_t j = 0; j < head; ++j) {
      if (j != i && list[j] != list[i]) pool[list[i]].push_back(list[j]);
    }
  }
}

namespace {

// The occlusion rule (graph_build.h) over cands, scored against p in any order; cands is reordered and
// its scores turned into the rule's (minus the distance to p). Candidates are taken nearest first, and
// only as far as the kept list fills: the order is found a few times max_keep at a time (select, then sort).
// clean: sorted ids of candidates that an earlier prune of p kept together. Such a c was kept there after
// every other clean candidate nearer to p (same scores, same order), so none of those occludes it: c is
// checked against the kept candidates outside `clean` only.
std::vector<uint32_t> prune_scored(const KeyRows& keys, const float* norms, uint32_t p, std::vector<Scored>& cands,
                                   int max_keep, const GraphBuildParams& gp, std::span<const uint32_t> clean) {
  const bool l2 = gp.occlusion == Occlusion::kL2;
  if (l2) {  // score = -distance(c, p)
    for (Scored& c : cands) c.score = 2.f * c.score - norms[c.id] - norms[p];
  }
  std::vector<uint32_t> kept;
  kept.reserve(static_cast<size_t>(std::max(max_keep, 0)));
  PruneScratch& scratch = prune_scratch();
  std::vector<uint32_t>& occluded_ids = scratch.occluded;
  occluded_ids.clear();
  std::vector<uint32_t>& kept_other = scratch.kept_other;
  kept_other.clear();
  // c · s for the kept s: each kept s widened once, and c's row scored against four of them at a time
  // where that gives keys.dot's bits (KeyRows::dot_is_widened_score), else one keys.dot each. Most
  // candidates are occluded (the list stays below max_keep), so c is read, never widened.
  const bool batched = keys.dot_is_widened_score();
  const auto dim = static_cast<size_t>(keys.dim);
  std::vector<const float*>& kept_wide = scratch.kept_wide;
  std::vector<const float*>& other_wide = scratch.other_wide;
  kept_wide.clear();
  other_wide.clear();
  if (batched) scratch.kept_rows.resize(static_cast<size_t>(std::max(max_keep, 0)) * dim);
  // Sorted prefix [0, sorted): the nearest candidates in order; the rest are all farther.
  const size_t step = static_cast<size_t>(std::max(2 * max_keep, 16));
  size_t sorted = 0;
  for (size_t i = 0; i < cands.size() && static_cast<int>(kept.size()) < max_keep; ++i) {
    if (i == sorted) {
      const size_t to = std::min(cands.size(), sorted + step);
      const auto from_it = cands.begin() + static_cast<std::ptrdiff_t>(sorted);
      const auto to_it = cands.begin() + static_cast<std::ptrdiff_t>(to);
      if (to_it != cands.end()) std::nth_element(from_it, to_it, cands.end(), better);
      std::sort(from_it, to_it, better);
      sorted = to;
    }
    const Scored& c = cands[i];
    const float d_cp = -c.score;
    bool occluded = false;
    const bool c_clean = !clean.empty() && std::binary_search(clean.begin(), clean.end(), c.id);
    const std::vector<uint32_t>& against = c_clean ? kept_other : kept;
    const std::vector<const float*>& against_wide = c_clean ? other_wide : kept_wide;
    for (size_t k = 0; k < against.size() && !occluded; k += 4) {
      const size_t count = std::min<size_t>(4, against.size() - k);
      float cs[4];
      if (batched) {
        keys.scores_widened(c.id, against_wide.data() + k, count, cs);
      } else {
        for (size_t t = 0; t < count; ++t) cs[t] = keys.dot(c.id, against[k + t]);
      }
      for (size_t t = 0; t < count; ++t) {
        const uint32_t s = against[k + t];
        const float d_cs = l2 ? norms[c.id] + norms[s] - 2.f * cs[t] : -cs[t];
        if (d_cs < d_cp) {
          occluded = true;
          break;
        }
      }
    }
    if (!occluded) {
      if (batched) {
        float* row = scratch.kept_rows.data() + kept.size() * dim;
        keys.widen(c.id, row);
        kept_wide.push_back(row);
        if (!clean.empty() && !c_clean) other_wide.push_back(row);
      }
      kept.push_back(c.id);
      if (!clean.empty() && !c_clean) kept_other.push_back(c.id);
    } else if (gp.fill_pruned) {
      occluded_ids.push_back(c.id);
    }
  }
  for (size_t i = 0; i < occluded_ids.size() && static_cast<int>(kept.size()) < max_keep; ++i) {
    kept.push_back(occluded_ids[i]);
  }
  return kept;
}

}  // namespace

// The occlusion rule; see graph_build.h.
std::vector<uint32_t> occlusion_prune(const KeyRows& keys, const float* norms, uint32_t p,
                                      const std::vector<Scored>& cands, int max_keep, const GraphBuildParams& gp,
                                      std::span<const uint32_t> kept_before) {
  thread_local std::vector<Scored> order;
  thread_local std::vector<uint32_t> clean;
  order.assign(cands.begin(), cands.end());
  set_kept_before(kept_before, gp, clean);
  return prune_scored(keys, norms, p, order, max_keep, gp, clean);
}

std::vector<int64_t> exact_topk_ip(const float* keys, int64_t n, int64_t dim, const float* queries,
                                   int64_t nq, int64_t k, int threads) {
  std::vector<int64_t> ids(static_cast<size_t>(nq * k));
  std::vector<float> scores(ids.size());
  blas_top_k_batch(queries, nq, keys, n, dim, static_cast<int>(k), ids.data(), scores.data(),
                   resolve_threads(threads));
  return ids;  // padded with -1 when k > n
}

int64_t key_list_count(int64_t n, const GraphBuildParams& params) {
  if (params.key_lists_stride <= 0 || std::min<int64_t>(params.Kq, n) < 2) return 0;
  return (n + params.key_lists_stride - 1) / params.key_lists_stride;
}

std::vector<int64_t> key_top_lists(const float* keys, int64_t n, int64_t dim, const GraphBuildParams& params) {
  const int64_t count = key_list_count(n, params);
  if (count == 0) return {};
  const int64_t stride = params.key_lists_stride;
  std::vector<float> strided;
  const float* as_queries = keys;
  if (stride > 1) {
    strided.resize(static_cast<size_t>(count * dim));
    for (int64_t i = 0; i < count; ++i) std::copy_n(keys + i * stride * dim, dim, strided.begin() + i * dim);
    as_queries = strided.data();
  }
  return exact_topk_ip(keys, n, dim, as_queries, count, std::min<int64_t>(params.Kq, n), params.threads);
}

namespace {
std::mutex g_steps_mutex;
GraphBuildSteps g_steps;
}  // namespace

GraphBuildSteps graph_build_steps() {
  const std::lock_guard lock(g_steps_mutex);
  return g_steps;
}

std::string describe_graph_build_steps(const GraphBuildSteps& s) {
  return fmt::format("{} graph{}: widen {:.2f} s, lists {:.2f} s, project {:.2f} s, connect {:.2f} s ({} of {} keys "
                     "searched), final prune {:.2f} s, reachability {:.2f} s, repair {:.2f} s, finish {:.2f} s",
                     s.builds, s.builds == 1 ? "" : "s", s.widen, s.lists, s.project, s.connect, s.connect_searches,
                     s.keys, s.final_prune, s.reach, s.repair, s.finish);
}

GraphBuildStepTimer::GraphBuildStepTimer(double GraphBuildSteps::*step)
    : step_(step), start_(std::chrono::steady_clock::now()) {}

GraphBuildStepTimer::~GraphBuildStepTimer() {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::lock_guard lock(g_steps_mutex);
  g_steps.*step_ += s;
}

void count_graph_build(int64_t keys, int64_t connect_searches) {
  const std::lock_guard lock(g_steps_mutex);
  ++g_steps.builds;
  g_steps.keys += keys;
  g_steps.connect_searches += connect_searches;
}

BuiltGraph build_graph(const KeyRows& keys, int64_t n, const float* queries, int64_t nq, const int64_t* topk,
                       int64_t width, const GraphBuildParams& params, const int64_t* key_topk, int64_t n_key_lists,
                       int64_t key_width, KeyQueries key_queries) {
  RA_REQUIRE(keys.extra == nullptr && keys.n_base >= n, "graph build: {} keys in one block of {}", n, keys.n_base);
  const int threads = resolve_threads(params.threads);
  std::vector<float> norms(static_cast<size_t>(n));  // [n] squared key norms, for L2 occlusion
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n > 4096)
  for (int64_t i = 0; i < n; ++i) norms[i] = keys.dot(static_cast<uint32_t>(i), static_cast<uint32_t>(i));
  const TopKLists sources[] = {{topk, nq, width}, {key_topk, key_topk ? n_key_lists : 0, key_width}};
  Lists adj;
  // clean[x] <= M (project's lists): 16 bits hold any degree a graph of this kind would use.
  RA_REQUIRE(params.M >= 1 && params.M <= std::numeric_limits<uint16_t>::max(), "graph build: M = {} (1 to {})",
             params.M, std::numeric_limits<uint16_t>::max());
  std::vector<uint16_t> clean(static_cast<size_t>(n), 0);
  {
    const GraphBuildStepTimer timer(&GraphBuildSteps::project);
    adj = project(keys, norms.data(), n, sources, params, threads, clean);
  }
  BuiltGraph g;
  g.entry = choose_entry(keys, n, queries, nq, threads);
  connect(keys, norms.data(), n, adj, clean, g.entry, params, threads, queries, nq, topk, width, key_queries);
  if (params.repair_ef > 0 && nq > 0) {
    const GraphBuildStepTimer timer(&GraphBuildSteps::repair);
    repair(keys, n, keys.dim, adj, spread_entries(g.entry, params.entry_samples, n), queries, nq, topk, width, params,
           threads);
  }
  g.csr = to_csr(adj, threads);
  g.norms = std::move(norms);
  return g;
}

BuiltGraph build_graph(const float* keys, int64_t n, int64_t dim, const float* queries, int64_t nq,
                       const int64_t* topk, int64_t width, const GraphBuildParams& params,
                       const int64_t* key_topk, int64_t n_key_lists, int64_t key_width) {
  return build_graph(KeyRows{keys, n, nullptr, dim}, n, queries, nq, topk, width, params, key_topk, n_key_lists,
                     key_width);
}

}  // namespace ra::retriever
