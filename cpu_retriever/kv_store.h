#pragma once
// Keys and values of one (layer, kv head) on the CPU, in the model's dtype (DESIGN §4: KV on the CPU
// is bf16 or fp16; scoring accumulates in fp32), or as int8 rows with a float32 scale each (kv_int8.h),
// keys and values each in a dtype of their own (KvDtypes: e.g. int8 keys with bf16 values). A float32
// checkpoint keeps float32, so a pipeline run with every key retrieved reproduces full attention to
// fp32 rounding. Rows are appended: the prefill's offloaded span first, then tokens evicted from the
// GPU window.
//
// Layout: keys and values are [size][head_dim] rows of their dtype (an int8 row: head_dim codes, then
// its scale: kv_row_bytes(dtype, head_dim) bytes); row i is token i of this store (the caller maps store
// rows to sequence positions). Keys and values live in RowArenas, at addresses that never move: the key
// indexes score this one copy in place (HeadShard), also from a background merge while rows are
// appended, and an append never copies what is stored (a growing vector of values did, on the first
// eviction after the build: 100 ms per layer at 128K tokens).

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cpu_retriever/kv_dtype.h"
#include "cpu_retriever/row_arena.h"

namespace ra::retriever {

class KvStore {
 public:
  // max_rows: the most rows the store will hold (address space only; see RowArena).
  static constexpr int64_t kDefaultMaxRows = int64_t{1} << 20;
  KvStore(int64_t head_dim, KvDtypes dtypes, int64_t max_rows = kDefaultMaxRows);

  // Appends n rows: keys, values: [n] rows of head_dim (kv_rows.h: float32 rows convert implicitly),
  // each side taken as RowArena::append takes it: rows of the side's dtype bit for bit, float32 rounded
  // to it (int8: kv_int8.h), bf16 widened and then rounded or quantised. All or none: a row a side
  // cannot take (inf or NaN into int8, a bad int8 scale, a pair of dtypes refused) is an ra::Error
  // naming it, and nothing is appended. Reads of the values are not safe against it (the owner
  // serialises appends with attend); key rows already in the store may be read concurrently
  // (RowArena). Throws ra::Error past max_rows.
  void append(KvRows keys, KvRows values, int64_t n);
  // The same with rows already in the store's dtypes: keys, values: [n] rows of kv_row_bytes(dtype,
  // head_dim) bytes each, copied bit for bit (a saved shard's rows).
  void append_raw(const void* keys, const void* values, int64_t n);

  int64_t size() const { return rows_; }
  int64_t head_dim() const { return head_dim_; }
  KvDtypes dtypes() const { return dtypes_; }
  // Memory made usable for the rows: codes and scales of int8 rows, in whole commit steps (RowArena).
  size_t memory_bytes() const {
    return keys_->bytes() + values_->bytes();
  }
  // The key rows, shared with the indexes that score them.
  const std::shared_ptr<const RowArena>& keys() const { return keys_view_; }
  // The value rows: [size()] rows of dtypes().value (read-only; for saving).
  const RowArena& values() const { return *values_; }

  // Row i's key as float32 (an int8 row dequantised): out [head_dim].
  void key(int64_t i, float* out) const;

  // Exact partial attention (DESIGN §4, kv_attend.h) of query q: [head_dim] float32 over the rows
  // `ids`: s_j = (q · k_j) · scale, o = Σ softmax(s)_j v_j. scratch: >= ids.size() floats; o:
  // [head_dim]. Returns lse (−inf and o = 0 for no ids). Ids must be < size().
  float attend(const float* q, std::span<const int64_t> ids, float scale, std::span<float> scratch,
               float* o) const;

  // The same over every row [0, size()).
  float attend_all(const float* q, float scale, std::span<float> scratch, float* o) const;

 private:
  int64_t head_dim_;
  KvDtypes dtypes_;
  int64_t rows_ = 0;
  std::shared_ptr<RowArena> keys_;             // [rows] rows of dtypes_.key
  std::shared_ptr<const RowArena> keys_view_;  // the same arena, read-only
  std::unique_ptr<RowArena> values_;          // [rows] rows of dtypes_.value
};

}  // namespace ra::retriever
