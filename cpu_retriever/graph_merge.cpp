#include "cpu_retriever/graph_merge.h"

#include "common/error.h"
#include "cpu_retriever/graph_adjacency.h"
#include "cpu_retriever/graph_build.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <vector>

namespace ra::retriever {

std::vector<uint32_t> spanning_parents(const GraphCsr& csr, uint32_t root) {
  std::vector<uint32_t> parent(static_cast<size_t>(csr.nodes()), kNoParent);
  if (csr.nodes() == 0) return parent;
  std::vector<uint32_t> queue{root};
  parent[root] = root;
  for (size_t head = 0; head < queue.size(); ++head) {
    const uint32_t u = queue[head];
    for (uint32_t v : csr.out(u)) {
      if (parent[v] == kNoParent) {
        parent[v] = u;
        queue.push_back(v);
      }
    }
  }
  return parent;
}

namespace {

// The lists a merge rewrites: the new nodes' and the touched old nodes', read through to the graph
// for the rest. Old lists are copied on first write, so the merge costs what it touches.
class Overlay {
 public:
  Overlay(const GraphAdjacency& graph, int64_t n_new)
      : graph_(graph), n_old_(graph.nodes()), added_(static_cast<size_t>(n_new)) {}

  std::vector<uint32_t>& list(uint32_t v) {
    if (v >= n_old_) return added_[v - n_old_];
    auto [it, fresh] = changed_.try_emplace(v);
    if (fresh) {
      const auto out = graph_.out(v);
      it->second.assign(out.begin(), out.end());
    }
    return it->second;
  }

  GraphDelta take() {
    GraphDelta d;
    d.added = std::move(added_);
    for (auto& [v, l] : changed_) d.changed.emplace_back(v, std::move(l));
    return d;
  }
  const std::map<uint32_t, std::vector<uint32_t>>& changed() const { return changed_; }

 private:
  const GraphAdjacency& graph_;
  int64_t n_old_;
  std::vector<std::vector<uint32_t>> added_;
  std::map<uint32_t, std::vector<uint32_t>> changed_;  // ordered: the delta comes out in id order
};

// A merge's working state: keys, norms, tree parents and the lists being rewritten.
class Merger {
 public:
  Merger(const KeyRows& keys, const MergeGraph& g, int64_t n_new, const GraphBuildParams& params)
      : keys_(keys), g_(g), lists_(g.graph, n_new), params_(params),
        cap_(static_cast<size_t>(params.degree_cap > 0 ? params.degree_cap : 2 * params.M)) {}

  Overlay& lists() { return lists_; }
  size_t cap() const { return cap_; }

  // Node r's list becomes the occlusion-pruned union of `ids` (r and duplicates dropped) up to the
  // cap, keeping r's tree children first: they are kept as if already chosen, so they also occlude.
  void prune_into(uint32_t r, std::vector<uint32_t> ids) {
    std::vector<uint32_t>& list = lists_.list(r);
    pinned_.clear();
    for (uint32_t y : list) {
      if (g_.parents[y] == r) pinned_.push_back(y);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<Scored> free, occluded;
    for (uint32_t c : ids) {
      if (c == r || std::find(pinned_.begin(), pinned_.end(), c) != pinned_.end()) continue;
      const Scored s{keys_.dot(r, c), c};
      (occluded_by_pinned(r, s) ? occluded : free).push_back(s);
    }
    std::sort(free.begin(), free.end(), better);
    const int room = static_cast<int>(cap_ > pinned_.size() ? cap_ - pinned_.size() : 0);
    std::vector<uint32_t> kept = occlusion_prune(keys_, g_.norms.data(), r, free, room, params_);
    if (params_.fill_pruned) {  // as occlusion_prune fills, with what the pinned edges occluded
      std::sort(occluded.begin(), occluded.end(), better);
      for (size_t i = 0; i < occluded.size() && static_cast<int>(kept.size()) < room; ++i) kept.push_back(occluded[i].id);
    }
    list = pinned_;
    list.insert(list.end(), kept.begin(), kept.end());
  }

  // Edge r -> x unless present; a list past the cap is re-pruned (build's link_pruned, with pins).
  void link(uint32_t r, uint32_t x) {
    std::vector<uint32_t>& l = lists_.list(r);
    if (r == x || std::find(l.begin(), l.end(), x) != l.end()) return;
    l.push_back(x);
    if (l.size() > cap_) prune_into(r, l);
  }

 private:
  // The occlusion rule of graph_build.h with a pinned node as the kept neighbour s.
  bool occluded_by_pinned(uint32_t r, const Scored& c) const {
    const bool l2 = params_.occlusion == Occlusion::kL2;
    const float* norms = g_.norms.data();
    const float d_cr = l2 ? norms[c.id] + norms[r] - 2.f * c.score : -c.score;
    for (uint32_t s : pinned_) {
      const float cs = keys_.dot(c.id, s);
      if ((l2 ? norms[c.id] + norms[s] - 2.f * cs : -cs) < d_cr) return true;
    }
    return false;
  }

  const KeyRows& keys_;
  const MergeGraph& g_;
  Overlay lists_;
  const GraphBuildParams& params_;
  size_t cap_;
  std::vector<uint32_t> pinned_;
};

// Best first (score desc, id asc), the first `keep` of cands.
void keep_best(std::vector<Scored>& cands, size_t keep) {
  keep = std::min(keep, cands.size());
  std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(keep), cands.end(), better);
  cands.resize(keep);
}

}  // namespace

GraphDelta insert_keys(const KeyRows& keys, const MergeGraph& g, int64_t n_new, const GraphBuildParams& params,
                       const MergeQueries& queries, SearchScratch& scratch) {
  const int64_t n_old = g.graph.nodes();
  const int64_t total = n_old + n_new;
  RA_REQUIRE(n_new >= 0, "graph merge: negative key count {}", n_new);
  RA_REQUIRE(n_old > 0 && !g.entries.empty(), "graph merge: needs a built graph with an entry point");
  RA_REQUIRE(g.parents.size() >= static_cast<size_t>(total) && g.norms.size() >= static_cast<size_t>(total),
             "graph merge: parents and norms must cover all {} nodes", total);
  RA_REQUIRE(queries.rows.size() % static_cast<size_t>(keys.dim) == 0, "graph merge: {} query floats are not rows of {}",
             queries.rows.size(), keys.dim);
  const int64_t n_queries = static_cast<int64_t>(queries.rows.size()) / keys.dim;
  RA_REQUIRE(queries.answers.empty() ||
                 (queries.answer_width > 0 &&
                  queries.answers.size() == static_cast<size_t>(n_queries * queries.answer_width)),
             "graph merge: {} answer ids for {} queries of width {}", queries.answers.size(), n_queries,
             queries.answer_width);
  const int M = params.M;
  const int ef = std::max(params.ef_construction, M);
  Merger merger(keys, g, n_new, params);
  Overlay& lists = merger.lists();
  auto is_new = [&](uint32_t v) { return static_cast<int64_t>(v) >= n_old; };

  // 1-2. Out-edges of each new key, from a search of the old graph and the other new keys.
  std::vector<std::vector<uint32_t>> found(static_cast<size_t>(n_new));
  std::vector<uint32_t> best_old(static_cast<size_t>(n_new), g.entries[0]);
  SearchStats stats;
  std::vector<Scored> cands, fellows;
  std::vector<float> kx(static_cast<size_t>(keys.dim));  // the new key, widened: it searches as a query
  for (int64_t j = 0; j < n_new; ++j) {
    const auto x = static_cast<uint32_t>(n_old + j);
    keys.widen(x, kx.data());
    const int got = beam_search(keys, g.graph, g.entries, kx.data(), ef, 0, scratch, &stats);
    cands.assign(scratch.pool.begin(), scratch.pool.begin() + got);
    if (got > 0) best_old[j] = scratch.pool[0].id;
    fellows.clear();
    for (int64_t i = 0; i < n_new; ++i) {
      if (i != j) fellows.push_back({keys.score(kx.data(), static_cast<uint32_t>(n_old + i)), static_cast<uint32_t>(n_old + i)});
    }
    stats.distance_computations += static_cast<int64_t>(fellows.size());
    keep_best(fellows, static_cast<size_t>(ef));
    cands.insert(cands.end(), fellows.begin(), fellows.end());
    std::sort(cands.begin(), cands.end(), better);
    found[j] = occlusion_prune(keys, g.norms.data(), x, cands, M, params);
  }

  // 3. Out-edges first (so no reverse edge into a new key is overwritten), then reverse edges in key
  // order, re-pruning full lists.
  for (int64_t j = 0; j < n_new; ++j) lists.list(static_cast<uint32_t>(n_old + j)) = found[j];
  for (int64_t j = 0; j < n_new; ++j) {
    for (uint32_t r : found[j]) merger.link(r, static_cast<uint32_t>(n_old + j));
  }

  // 4. Projection of the queries' top lists: from a query's decode answer and the newest keys, or the
  // old graph searched; the new keys scored exactly either way.
  if (n_queries > 0) {
    const auto width = static_cast<size_t>(std::min<int64_t>(params.Kq, total));
    const int query_ef = params.merge_query_ef > 0 ? params.merge_query_ef
                                                   : std::max(2 * params.Kq, params.ef_construction);
    // Pivot candidates, gathered on compact local ids (add_projection_candidates indexes by id).
    std::unordered_map<uint32_t, uint32_t> local_of;
    std::vector<uint32_t> global_of;
    std::vector<std::vector<uint32_t>> pool;
    std::vector<uint32_t> list;
    // Old nodes from here on are scored exactly beside a decode answer: they joined the graph after
    // (or shortly before) the query's step, so its answer could not hold them.
    const int64_t recent_first = std::max<int64_t>(0, n_old - std::max(0, params.merge_recent_keys));
    for (int64_t q = 0; q < n_queries; ++q) {
      const float* qv = queries.rows.data() + q * keys.dim;
      const uint32_t* answer =
          queries.answers.empty() ? nullptr : queries.answers.data() + q * queries.answer_width;
      if (answer != nullptr && answer[0] != kNoAnswer) {
        cands.clear();
        for (int i = 0; i < queries.answer_width && answer[i] != kNoAnswer; ++i) {
          if (answer[i] < recent_first) cands.push_back({keys.score(qv, answer[i]), answer[i]});
        }
        for (int64_t v = recent_first; v < total; ++v) {
          cands.push_back({keys.score(qv, static_cast<uint32_t>(v)), static_cast<uint32_t>(v)});
        }
        stats.distance_computations += static_cast<int64_t>(cands.size());
      } else {
        const int got = beam_search(keys, g.graph, g.entries, qv, query_ef, static_cast<int>(width), scratch, &stats);
        stats.distance_computations += n_new;
        cands.assign(scratch.pool.begin(), scratch.pool.begin() + got);
        for (int64_t i = 0; i < n_new; ++i) {
          cands.push_back({keys.score(qv, static_cast<uint32_t>(n_old + i)), static_cast<uint32_t>(n_old + i)});
        }
      }
      keep_best(cands, width);
      list.clear();
      for (const Scored& c : cands) {
        auto [it, fresh] = local_of.try_emplace(c.id, static_cast<uint32_t>(global_of.size()));
        if (fresh) global_of.push_back(c.id);
        list.push_back(it->second);
      }
      pool.resize(global_of.size());
      add_projection_candidates(list, params, pool);
    }
    // Every pivot's list from the lists before the projection, then the reverse edges of the new
    // edges (as project_onto does), pivots in id order.
    std::vector<std::pair<uint32_t, uint32_t>> pivots;  // (id, local)
    for (uint32_t l = 0; l < pool.size(); ++l) {
      if (!pool[l].empty()) pivots.emplace_back(global_of[l], l);
    }
    std::sort(pivots.begin(), pivots.end());
    std::vector<std::vector<uint32_t>> before(pivots.size());
    for (size_t i = 0; i < pivots.size(); ++i) {
      const auto [p, l] = pivots[i];
      before[i] = lists.list(p);
      std::vector<uint32_t> ids = before[i];
      for (uint32_t c : pool[l]) ids.push_back(global_of[c]);
      merger.prune_into(p, std::move(ids));
    }
    for (size_t i = 0; i < pivots.size(); ++i) {
      const uint32_t p = pivots[i].first;
      const std::vector<uint32_t> now = lists.list(p);  // a copy: link() may re-prune p's own list
      for (uint32_t c : now) {
        if (std::find(before[i].begin(), before[i].end(), c) == before[i].end()) merger.link(c, p);
      }
    }
  }

  // 5. Tree parents of the new keys: an old node with an edge to it, else a new one that has a parent
  // (breadth first), else its best old candidate, given the edge (which may exceed the cap).
  std::vector<uint32_t> ready;  // new nodes with a parent, to expand
  for (const auto& [v, l] : lists.changed()) {
    for (uint32_t y : l) {
      if (is_new(y) && g.parents[y] == kNoParent) {
        g.parents[y] = v;
        ready.push_back(y);
      }
    }
  }
  auto expand = [&](size_t from) {
    for (size_t head = from; head < ready.size(); ++head) {
      const uint32_t u = ready[head];
      for (uint32_t y : lists.list(u)) {
        if (is_new(y) && g.parents[y] == kNoParent) {
          g.parents[y] = u;
          ready.push_back(y);
        }
      }
    }
  };
  expand(0);
  for (int64_t j = 0; j < n_new; ++j) {
    const auto y = static_cast<uint32_t>(n_old + j);
    if (g.parents[y] != kNoParent) continue;
    std::vector<uint32_t>& l = lists.list(best_old[j]);
    if (std::find(l.begin(), l.end(), y) == l.end()) l.push_back(y);
    g.parents[y] = best_old[j];
    const size_t from = ready.size();
    ready.push_back(y);
    expand(from);
  }
  GraphDelta delta = lists.take();
  delta.distance_computations = stats.distance_computations;
  return delta;
}

}  // namespace ra::retriever
