#pragma once
// Keys and values of one (layer, kv head) on the CPU, in the model's dtype (DESIGN §4: KV on the CPU
// is bf16 or fp16; scoring accumulates in fp32). A float32 checkpoint keeps float32, so a pipeline run
// with every key retrieved reproduces full attention to fp32 rounding. Rows are appended: the prefill's
// offloaded span first, then tokens evicted from the GPU window.
//
// Layout: keys and values are [size][head_dim] rows of the store's dtype; row i is token i of this
// store (the caller maps store rows to sequence positions). Keys and values live in RowArenas, at
// addresses that never move: the key indexes score this one copy in place (HeadShard), also from a
// background merge while rows are appended, and an append never copies what is stored (a growing
// vector of values did, on the first eviction after the build: 100 ms per layer at 128K tokens).

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
  KvStore(int64_t head_dim, KvDtype dtype, int64_t max_rows = kDefaultMaxRows);

  // Appends n rows: keys, values: [n][head_dim] float32, rounded to the store's dtype. Reads of the
  // values are not safe against it (the owner serialises appends with attend); key rows already in
  // the store may be read concurrently (RowArena). Throws ra::Error past max_rows.
  void append(const float* keys, const float* values, int64_t n);
  // The same with rows already in the store's dtype: keys, values: [n][head_dim] elements of dtype(),
  // copied bit for bit (a saved shard's rows).
  void append_raw(const void* keys, const void* values, int64_t n);

  int64_t size() const { return rows_; }
  int64_t head_dim() const { return head_dim_; }
  KvDtype dtype() const { return dtype_; }
  size_t memory_bytes() const {
    return keys_->bytes() + values_->bytes();
  }
  // The key rows, shared with the indexes that score them.
  const std::shared_ptr<const RowArena>& keys() const { return keys_view_; }
  // The value rows: [size()][head_dim] of dtype() (read-only; for saving).
  const RowArena& values() const { return *values_; }

  // Row i's key as float32: out [head_dim].
  void key(int64_t i, float* out) const;

  // Exact partial attention (DESIGN §4) of query q: [head_dim] float32 over the rows `ids`:
  // s_j = (q · k_j) · scale, o = Σ softmax(s)_j v_j. scratch: >= ids.size() floats; o: [head_dim].
  // Returns lse (−inf and o = 0 for no ids). Ids must be < size().
  float attend(const float* q, std::span<const int64_t> ids, float scale, std::span<float> scratch,
               float* o) const;

  // The same over every row [0, size()).
  float attend_all(const float* q, float scale, std::span<float> scratch, float* o) const;

 private:
  float attend_impl(const float* q, const int64_t* ids, int64_t n, float scale, std::span<float> scratch,
                    float* o) const;

  int64_t head_dim_;
  KvDtype dtype_;
  int64_t rows_ = 0;
  std::shared_ptr<RowArena> keys_;             // [rows][head_dim] of dtype_
  std::shared_ptr<const RowArena> keys_view_;  // the same arena, read-only
  std::unique_ptr<RowArena> values_;          // [rows][head_dim] of dtype_
};

}  // namespace ra::retriever
