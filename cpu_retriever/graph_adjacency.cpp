#include "cpu_retriever/graph_adjacency.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "common/error.h"

namespace ra::retriever {
namespace {

// Entries of a slab: 1 MiB, a few thousand new nodes' slots.
constexpr size_t kSlabEntries = size_t{1} << 18;

}  // namespace

GraphAdjacency::GraphAdjacency(GraphCsr built, int64_t max_nodes, size_t slot_capacity)
    : built_(std::move(built.neighbours)), nodes_(built.nodes()), max_nodes_(max_nodes), slot_capacity_(slot_capacity) {
  RA_REQUIRE(max_nodes >= nodes_ && max_nodes <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()),
             "graph adjacency: max_nodes {} must be in [{}, 2^32)", max_nodes, nodes_);
  RA_REQUIRE(slot_capacity > 0, "graph adjacency: slot_capacity must be positive");
  // Address space only: pages are backed as records are written (one page per 256 nodes).
  reserved_bytes_ = std::max<size_t>(1, static_cast<size_t>(max_nodes)) * sizeof(Record);
  void* p = mmap(nullptr, reserved_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  RA_REQUIRE(p != MAP_FAILED, "graph adjacency: cannot reserve {} bytes for {} nodes: {}", reserved_bytes_, max_nodes,
             std::strerror(errno));
  records_ = static_cast<Record*>(p);
  for (int64_t i = 0; i < nodes_; ++i) {
    const auto len = static_cast<uint32_t>(built.offsets[i + 1] - built.offsets[i]);
    records_[i] = {built_.data() + built.offsets[i], len, len};
  }
}

GraphAdjacency::~GraphAdjacency() {
  if (records_ != nullptr) munmap(records_, reserved_bytes_);
}

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
  return static_cast<size_t>(nodes_) * sizeof(Record) + (built_.capacity() + slab_total_) * sizeof(uint32_t);
}

}  // namespace ra::retriever
