#pragma once
// The tokens a serving session evicted to one layer of this retriever since the layer's last build
// (transport/messages.h, kRewind): kept apart from the shards, so that the shards stay exactly the
// prebuilt context's (its document's offloaded KV and indexes) and a later request on the same context
// can return to any position past the document by dropping the tail's last tokens. HeadShard and the
// indexes only ever grow; this tail can shrink.
//
// Search: a session's own tokens are few and recent (the prompt's continuation past the document and
// what it generated), so every one of them is attended exactly, in addition to the shard's top-k:
// the partial state of the tail is merged into the shard's with log-sum-exp weights (DESIGN §4). The
// tail's rows are disjoint from the shard's, so no key counts twice.
//
// Layout: per owned kv head i, keys_[i] and values_[i]: [rows] rows in the shard store's dtypes (bf16 /
// f16 / f32 / int8 with its scale: kv_row_bytes(dtype, head_dim) bytes each), attended by the store's
// own kernel (kv_attend.h), so a row scores exactly as it would in the shard. positions_: [rows],
// ascending.

#include <cstdint>
#include <span>
#include <vector>

#include "cpu_retriever/kv_dtype.h"
#include "cpu_retriever/key_index.h"

namespace ra::retriever {

// One search thread's scratch for SessionTail::merge_into; grows with the longest tail it has seen
// (geometrically), so a session's steps allocate only when its tail outgrows every earlier one.
struct SessionScratch {
  std::vector<float> weights;  // [rows]
  std::vector<float> o;        // [head_dim]
};

class SessionTail {
 public:
  SessionTail() = default;
  // n_owned: the layer's owned kv heads; dtypes: the shards' (one KvDtype: keys and values alike).
  SessionTail(int64_t n_owned, int64_t head_dim, KvDtypes dtypes);

  bool empty() const { return positions_.empty(); }
  int64_t rows() const { return static_cast<int64_t>(positions_.size()); }
  std::span<const int64_t> positions() const { return positions_; }

  // Appends the token at `position` (> every position held): k, v: [n_kv_heads][head_dim] float32 of
  // every kv head; `owned` (ascending kv head ids, n_owned of them) picks this retriever's. An int8 side
  // refuses inf and NaN (ra::Error naming the head and element; nothing appended).
  void append(int64_t position, const float* k, const float* v, std::span<const int64_t> owned);
  // Drops the tokens at positions >= position.
  void rewind(int64_t position);
  void clear();

  // Merges the exact partial attention of q: [head_dim] float32 over owned head i's rows into
  // (lse, o: [head_dim] float32), the shard's partial; returns the merged lse. Counts the rows scored
  // in stats. Concurrent calls are safe with one scratch each; not against append / rewind.
  float merge_into(size_t i, const float* q, float scale, float lse, float* o, SessionScratch& scratch,
                   SearchStats* stats) const;

 private:
  int64_t head_dim_ = 0;
  KvDtypes dtypes_ = KvDtypes(KvDtype::kF32);
  size_t key_bytes_ = 0, value_bytes_ = 0;  // one row's
  std::vector<int64_t> positions_;
  std::vector<std::vector<std::byte>> keys_, values_;  // [n_owned][rows * row bytes]
};

}  // namespace ra::retriever
