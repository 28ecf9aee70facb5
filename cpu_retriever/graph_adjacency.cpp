#include "cpu_retriever/graph_adjacency.h"

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace ra::retriever {
namespace {

// Entries of a slab: 1 MiB, a few thousand new nodes' slots.
constexpr size_t kSlabEntries = size_t{1} << 18;

}  // namespace

GraphAdjacency::GraphAdjacency(GraphCsr built, int64_t max_nodes, size_t slot_capacity)
    : built_entries_(built.neighbours.size()), nodes_(built.nodes()), max_nodes_(max_nodes), slot_capacity_(slot_capacity) {
  RA_REQUIRE(max_nodes >= nodes_ && max_nodes <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()),
             "graph adjacency: max_nodes {} must be in [{}, 2^32)", max_nodes, nodes_);
  RA_REQUIRE(slot_capacity > 0, "graph adjacency: slot_capacity must be positive");
  // Address space only: pages are backed as records are written.
  record_space_ = AddressReservation(std::max<size_t>(1, static_cast<size_t>(max_nodes)) * sizeof(Record),
                                     /*usable=*/true, "graph adjacency records");
  records_ = reinterpret_cast<Record*>(record_space_.data());
  built_ = AddressReservation(std::max<size_t>(1, built_entries_) * sizeof(uint32_t), /*usable=*/true,
                              "graph adjacency lists");
  auto* lists = reinterpret_cast<uint32_t*>(built_.data());
  std::copy(built.neighbours.begin(), built.neighbours.end(), lists);
  for (int64_t i = 0; i < nodes_; ++i) {
    const auto len = static_cast<uint32_t>(built.offsets[i + 1] - built.offsets[i]);
    records_[i] = {lists + built.offsets[i], len, len};
  }
}

GraphAdjacency::~GraphAdjacency() = default;

size_t GraphAdjacency::slot_need(int64_t i, size_t len) const {
  if (i < nodes_ && len <= records_[i].cap) return 0;
  return std::max(len, slot_capacity_);
}

void GraphAdjacency::reserve(size_t entries) {
  if (slab_entries_ - slab_used_ >= entries) return;
  const size_t size = std::max(kSlabEntries, entries);
  slabs_.push_back(std::make_unique_for_overwrite<uint32_t[]>(size));
  slab_entries_ = size;
  slab_used_ = 0;
  slab_total_ += size;
}

uint32_t* GraphAdjacency::take_slot(size_t cap) {
  reserve(cap);  // a no-op when the writer reserved ahead
  uint32_t* slot = slabs_.back().get() + slab_used_;
  slab_used_ += cap;
  return slot;
}

void GraphAdjacency::set(int64_t i, std::span<const uint32_t> list) {
  RA_ASSERT(i >= 0 && i < nodes_);
  Record& r = records_[i];
  if (list.size() > r.cap) {
    const size_t cap = slot_need(i, list.size());
    r.data = take_slot(cap);
    r.cap = static_cast<uint32_t>(cap);
  }
  std::copy(list.begin(), list.end(), r.data);
  r.len = static_cast<uint32_t>(list.size());
}

void GraphAdjacency::add(std::span<const uint32_t> list) {
  RA_REQUIRE(nodes_ < max_nodes_, "graph adjacency: full at {} nodes (its max_nodes)", max_nodes_);
  const size_t cap = slot_need(nodes_, list.size());
  Record r{take_slot(cap), static_cast<uint32_t>(list.size()), static_cast<uint32_t>(cap)};
  std::copy(list.begin(), list.end(), r.data);
  records_[nodes_] = r;
  ++nodes_;
}

GraphCsr GraphAdjacency::to_csr() const {
  GraphCsr csr;
  csr.offsets.resize(static_cast<size_t>(nodes_) + 1);
  for (int64_t i = 0; i < nodes_; ++i) csr.offsets[i + 1] = csr.offsets[i] + records_[i].len;
  csr.neighbours.reserve(csr.offsets.back());
  for (int64_t i = 0; i < nodes_; ++i) {
    const auto l = out(i);
    csr.neighbours.insert(csr.neighbours.end(), l.begin(), l.end());
  }
  return csr;
}

size_t GraphAdjacency::bytes() const {
  return static_cast<size_t>(nodes_) * sizeof(Record) + (built_entries_ + slab_total_) * sizeof(uint32_t);
}

}  // namespace ra::retriever
