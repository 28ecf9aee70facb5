#include "cpu_retriever/graph_merge.h"

#include "common/error.h"
#include "cpu_retriever/blas_top_k.h"
#include "cpu_retriever/graph_build.h"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace ra::retriever {

GraphCsr insert_keys(const KeyRows& keys, const GraphCsr& graph, int64_t n_new, std::span<const uint32_t> entries,
                     const GraphBuildParams& params, std::span<const float> queries) {
  const int64_t n_old = graph.nodes();
  const int64_t total = n_old + n_new;
  RA_REQUIRE(n_new >= 0, "graph merge: negative key count {}", n_new);
  RA_REQUIRE(n_old > 0 && !entries.empty(), "graph merge: needs a built graph with an entry point");
  RA_REQUIRE(queries.size() % static_cast<size_t>(keys.dim) == 0, "graph merge: {} query floats are not rows of {}",
             queries.size(), keys.dim);
  const int threads = params.threads > 0 ? params.threads : omp_get_max_threads();
  const int M = params.M;
  const size_t cap = static_cast<size_t>(params.degree_cap > 0 ? params.degree_cap : 2 * M);
  const int ef = std::max(params.ef_construction, M);

  std::vector<float> norms(static_cast<size_t>(total));  // [total] squared norms, for L2 occlusion
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < total; ++i) norms[i] = keys.dot(static_cast<uint32_t>(i), static_cast<uint32_t>(i));

  // 1-2. Out-edges of each new key, from searches of the old graph (read-only, in parallel).
  std::vector<std::vector<uint32_t>> found(static_cast<size_t>(n_new));
  std::vector<uint32_t> best_old(static_cast<size_t>(n_new), entries[0]);
#pragma omp parallel num_threads(threads)
  {
    SearchScratch scratch(n_old);
    std::vector<Scored> cands;
    std::vector<float> kx(static_cast<size_t>(keys.dim));  // the new key, widened: it searches as a query
#pragma omp for schedule(dynamic, 16)
    for (int64_t j = 0; j < n_new; ++j) {
      const uint32_t x = static_cast<uint32_t>(n_old + j);
      keys.widen(x, kx.data());
      const int got = beam_search(keys, graph, entries, kx.data(), ef, 0, scratch, nullptr);
      cands.assign(scratch.pool.begin(), scratch.pool.begin() + got);
      if (got > 0) best_old[j] = scratch.pool[0].id;
      // The other new keys: the best ef of them by x · y.
      const size_t old_count = cands.size();
      for (int64_t i = 0; i < n_new; ++i) {
        if (i != j) cands.push_back({keys.score(kx.data(), static_cast<uint32_t>(n_old + i)),
                                     static_cast<uint32_t>(n_old + i)});
      }
      const size_t keep_new = std::min<size_t>(cands.size() - old_count, static_cast<size_t>(ef));
      std::partial_sort(cands.begin() + static_cast<std::ptrdiff_t>(old_count),
                        cands.begin() + static_cast<std::ptrdiff_t>(old_count + keep_new), cands.end(), better);
      cands.resize(old_count + keep_new);
      std::sort(cands.begin(), cands.end(), better);
      found[j] = occlusion_prune(keys, norms.data(), x, cands, M, params);
    }
  }

  // 3. Apply in key order: out-edges, then reverse edges with re-pruning of full lists.
  std::vector<std::vector<uint32_t>> adj(static_cast<size_t>(total));
  for (int64_t i = 0; i < n_old; ++i) {
    const auto out = graph.out(i);
    adj[i].assign(out.begin(), out.end());
  }
  for (int64_t j = 0; j < n_new; ++j) {
    const uint32_t x = static_cast<uint32_t>(n_old + j);
    adj[x] = found[j];
    for (uint32_t r : found[j]) link_pruned(keys, norms.data(), adj, r, x, cap, params);
  }

  // 4. Projection of the queries' exact top lists over all keys.
  const int64_t n_queries = static_cast<int64_t>(queries.size()) / keys.dim;
  if (n_queries > 0) {
    const int64_t width = std::min<int64_t>(params.Kq, total);
    // Each block of rows (the build's keys, then the merged ones) by blocked BLAS, then the two lists
    // merged per query: the block ids of the second are offset by n_base.
    const int64_t n_base = std::min<int64_t>(keys.n_base, total), n_extra = total - n_base;
    const auto w = static_cast<size_t>(width);
    std::vector<int64_t> base_ids(n_queries * w), extra_ids(n_queries * w);
    std::vector<float> base_scores(n_queries * w), extra_scores(n_queries * w);
    blas_top_k_batch(queries.data(), n_queries, keys.base, keys.dtype, n_base, keys.dim, static_cast<int>(width),
                     base_ids.data(), base_scores.data(), threads);
    if (n_extra > 0) {
      blas_top_k_batch(queries.data(), n_queries, keys.extra, keys.dtype, n_extra, keys.dim, static_cast<int>(width),
                       extra_ids.data(), extra_scores.data(), threads);
    }
    std::vector<std::vector<uint32_t>> lists(static_cast<size_t>(n_queries));
    for (int64_t q = 0; q < n_queries; ++q) {
      size_t a = 0, b = 0;
      const size_t row = static_cast<size_t>(q) * w;
      auto valid = [&](const std::vector<int64_t>& ids, size_t i) { return i < w && ids[row + i] >= 0; };
      while (lists[q].size() < w && (valid(base_ids, a) || (n_extra > 0 && valid(extra_ids, b)))) {
        const bool take_extra =
            n_extra > 0 && valid(extra_ids, b) &&
            (!valid(base_ids, a) ||
             better(Scored{extra_scores[row + b], static_cast<uint32_t>(n_base + extra_ids[row + b])},
                    Scored{base_scores[row + a], static_cast<uint32_t>(base_ids[row + a])}));
        lists[q].push_back(take_extra ? static_cast<uint32_t>(n_base + extra_ids[row + b++])
                                      : static_cast<uint32_t>(base_ids[row + a++]));
      }
    }
    project_onto(keys, norms.data(), adj, lists, cap, params, threads);
  }

  // 5. Reachability from entries[0]: old nodes stay reachable only through old edges that re-pruning
  // may have dropped, so flood the whole graph and link every unreached node from its best reachable
  // match (for a new key: its best old candidate; for an old node: its first old in-neighbour).
  link_unreached(adj, entries[0], [&](uint32_t v, const std::vector<uint8_t>& reached) {
    if (v >= n_old && reached[best_old[v - n_old]]) return best_old[v - n_old];
    for (int64_t u = 0; u < n_old; ++u) {  // rare: an old node cut off by re-pruning
      const auto out = graph.out(u);
      if (reached[u] && std::find(out.begin(), out.end(), v) != out.end()) return static_cast<uint32_t>(u);
    }
    return entries[0];
  });
  return to_csr(adj);
}

}  // namespace ra::retriever
