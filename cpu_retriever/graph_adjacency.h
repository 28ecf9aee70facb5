#pragma once
// The adjacency of a graph that grows after its build (GraphIndex's merges, issue 16 item 5): a merge
// appends its new nodes and rewrites the lists of the old nodes it touched, and nothing else, so its
// cost is O(new keys), not O(context) as rebuilding a CSR would be.
//
// The build's lists and the node records live in huge-page-advised reservations
// (common/address_reservation.h): a search's hops land on random nodes.
//
// Layout: node i's out-neighbours are list(i) = [len_i] uint32 at data_i, a slot of cap_i >= len_i
// entries in a slab. The build's CSR becomes the first slab as is (cap_i = its built degree); a new
// node gets a slot of slot_capacity entries (the degree cap) in a fresh slab, and an old list that
// outgrows its slot moves to a new slot there (the old one is abandoned, so every node moves at most
// about once). Slabs never move, and node records live in address space reserved for max_nodes at
// construction, so readers' pointers stay valid while the graph grows.
//
// Threads: set(), add() and reserve() are the writer's (one at a time); readers and the writer
// exclude each other by the owner's lock (GraphIndex: searches shared, the merge's apply exclusive).
// The writer may read without that lock, since only it writes.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/address_reservation.h"
#include "cpu_retriever/graph_search.h"

namespace ra::retriever {

class GraphAdjacency {
 public:
  // built: the build's graph. max_nodes >= built.nodes():
  // the most nodes the graph will ever hold (address space only). slot_capacity > 0: the entries of a
  // new node's slot.
  GraphAdjacency(GraphCsr built, int64_t max_nodes, size_t slot_capacity);
  ~GraphAdjacency();
  GraphAdjacency(const GraphAdjacency&) = delete;
  GraphAdjacency& operator=(const GraphAdjacency&) = delete;

  int64_t nodes() const { return nodes_; }
  int64_t max_nodes() const { return max_nodes_; }
  std::span<const uint32_t> out(int64_t i) const { return {records_[i].data, records_[i].len}; }
  // Loads a search will make soon (beam search: the next node to expand): i's record, then i's list.
  void prefetch_record(int64_t i) const { __builtin_prefetch(records_ + i); }
  void prefetch_out(int64_t i) const { __builtin_prefetch(records_[i].data); }

  // Writer: makes room (outside the readers' lock) for `entries` more neighbour entries in new slots,
  // so that set() and add() within that budget allocate nothing.
  void reserve(size_t entries);
  // Writer: node i < nodes() gets `list` as its out-neighbours (in place when it fits its slot).
  void set(int64_t i, std::span<const uint32_t> list);
  // Writer: appends node nodes() with `list`. Throws ra::Error past max_nodes.
  void add(std::span<const uint32_t> list);
  // Entries a set()/add() of a list of `len` entries for node i may take from new slots (0 when it
  // fits i's slot; i == nodes() for add()).
  size_t slot_need(int64_t i, size_t len) const;

  GraphCsr to_csr() const;  // a copy, for tests
  size_t bytes() const;     // node records + slabs

 private:
  struct Record {
    uint32_t* data;
    uint32_t len;
    uint32_t cap;
  };
  uint32_t* take_slot(size_t cap);  // from the last slab, or a new one

  AddressReservation built_;  // the build's neighbours: the slots of nodes [0, built nodes)
  size_t built_entries_ = 0;
  int64_t nodes_ = 0;
  int64_t max_nodes_ = 0;
  size_t slot_capacity_;
  AddressReservation record_space_;
  Record* records_ = nullptr;  // [max_nodes_] in record_space_; [0, nodes_) valid
  std::vector<std::unique_ptr<uint32_t[]>> slabs_;  // slots past the build, never moved
  size_t slab_entries_ = 0;                         // entries of the last slab
  size_t slab_used_ = 0;                            // entries handed out from the last slab
  size_t slab_total_ = 0;                           // entries of all slabs, for bytes()
};

}  // namespace ra::retriever
