// Saving and loading a built GraphIndex (issue 18). The format, after the owner's record header
// (head_shard_io.cpp), all values in host byte order:
//
//   int64   nodes                 n, the built keys (ids [0, n))
//   int64   dim
//   uint32  entry point           the build's (build_entry_)
//   array   entries  [count] uint32   the search entries (entry point, then the spread samples)
//   array   offsets  [n + 1] uint64   the adjacency as CSR: node i's list is neighbours[offsets[i] ..
//   array   neighbours [offsets[n]] uint32   offsets[i + 1]), in the build's order
//   uint8   navigation            1 when built with the 8-bit copy (GraphBuildParams::int8_navigation)
//   array   scales [dim] float32      navigation only: the copy's channel scales
//   array   codes [n][dim] int8       navigation only: the copy's codes
//
// (array: a uint64 count, then the elements: shard_io.h.) The merge state (tree parents, key norms)
// and the merge threshold are derived on load exactly as the build derives them, from the adjacency,
// the rows and the current parameters. Only the built state is saved: keys appended since (merged or
// in the tail) are refused, so no row is ever lost silently.

#include <memory>
#include <shared_mutex>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/graph_adjacency.h"
#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/shard_io.h"

namespace ra::retriever {

GraphIndex::GraphIndex(std::shared_ptr<const RowArena> rows, int64_t n, const GraphBuildParams& params)
    : keys_(rows ? rows->data() : nullptr),
      n_(n),
      dim_(rows ? rows->dim() : 0),
      params_(params),
      arena_(std::move(rows)),
      arena_first_(n) {
  RA_REQUIRE(arena_ != nullptr, "graph index: null key arena");
  RA_REQUIRE(n > 0 && n <= arena_->size(), "graph index: needs 1 to {} keys of its arena (got n = {})",
             arena_->size(), n);
}

void GraphIndex::save(ShardWriter& out) const {
  RA_REQUIRE(!own_arena_, "graph index: only an index on a shared arena is saved (its owner saves the rows)");
  std::shared_lock lock(mutex_);  // against a merge's apply (there is none to run when nothing was taken)
  RA_REQUIRE(taken_ == 0,
             "graph index: {} keys were taken since the build ({} merged, {} in the tail); a saved graph holds "
             "the build only",
             taken_, merged_, taken_ - merged_);
  const GraphCsr csr = graph_->to_csr();
  out.put<int64_t>(n_);
  out.put<int64_t>(dim_);
  out.put<uint32_t>(build_entry_);
  out.put_array(entries_);
  out.put_array(csr.offsets);
  out.put_array(csr.neighbours);
  out.put<uint8_t>(nav_ ? 1 : 0);
  if (nav_) {
    out.put_array(std::span<const float>(nav_->scales(), static_cast<size_t>(dim_)));
    out.put_array(nav_->codes());
  }
}

std::unique_ptr<GraphIndex> GraphIndex::load(ShardReader& in, std::shared_ptr<const RowArena> rows, int64_t n,
                                             const GraphBuildParams& params) {
  std::unique_ptr<GraphIndex> g(new GraphIndex(std::move(rows), n, params));
  g->check_params(nullptr, 0, nullptr, 0);
  const auto nodes = in.get<int64_t>("nodes");
  in.check(nodes == n, "nodes", "{} saved, but the shard holds {} rows", nodes, n);
  const auto dim = in.get<int64_t>("dim");
  in.check(dim == g->dim_, "dim", "{} saved, the rows have {}", dim, g->dim_);
  const auto id_ok = [n](uint64_t id) { return id < static_cast<uint64_t>(n); };

  g->build_entry_ = in.get<uint32_t>("entry point");
  in.check(id_ok(g->build_entry_), "entry point", "node {} of {}", g->build_entry_, n);
  g->entries_ = in.get_array<uint32_t>("entries");
  in.check(!g->entries_.empty() && g->entries_.front() == g->build_entry_, "entries",
           "the list does not start with the entry point");
  for (const uint32_t e : g->entries_) in.check(id_ok(e), "entries", "node {} of {}", e, n);

  GraphCsr csr;
  csr.offsets = in.get_array<uint64_t>("adjacency offsets", static_cast<uint64_t>(n) + 1);
  in.check(csr.offsets.size() == static_cast<size_t>(n) + 1 && csr.offsets.front() == 0, "adjacency offsets",
           "{} offsets for {} nodes, or not starting at 0", csr.offsets.size(), n);
  for (int64_t i = 0; i < n; ++i) {
    in.check(csr.offsets[i] <= csr.offsets[i + 1], "adjacency offsets", "node {}'s list ends before it starts", i);
  }
  csr.neighbours = in.get_array<uint32_t>("adjacency neighbours");
  in.check(csr.neighbours.size() == csr.offsets.back(), "adjacency neighbours",
           "{} neighbours, the offsets count {}", csr.neighbours.size(), csr.offsets.back());
  for (const uint32_t v : csr.neighbours) in.check(id_ok(v), "adjacency neighbours", "node {} of {}", v, n);

  const auto navigation = in.get<uint8_t>("navigation");
  in.check(navigation == (params.int8_navigation ? 1 : 0), "navigation",
           "saved {}, the parameters ask for {} (GraphBuildParams::int8_navigation)", navigation != 0,
           params.int8_navigation);
  std::vector<float> scales;
  std::vector<int8_t> codes;
  if (navigation != 0) {
    scales = in.get_array<float>("navigation scales", static_cast<uint64_t>(dim));
    in.check(scales.size() == static_cast<size_t>(dim), "navigation scales", "{} scales for {} channels",
             scales.size(), dim);
    codes = in.get_array<int8_t>("navigation codes", static_cast<uint64_t>(n * dim));
    in.check(codes.size() == static_cast<size_t>(n * dim), "navigation codes", "{} codes for {} rows of {}",
             codes.size(), n, dim);
  }

  g->adopt_graph(std::move(csr));
  if (navigation != 0) {
    try {
      g->nav_ = std::make_unique<NavigationKeys>(scales, codes, g->max_nodes());
    } catch (const Error& e) {
      in.fail("navigation scales", e.what());
    }
  }
  return g;
}

}  // namespace ra::retriever
