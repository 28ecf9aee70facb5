#pragma once
// Keys and values of one (layer, kv head) on the CPU, in the model's 16-bit dtype (DESIGN §4: KV on
// the CPU is bf16 or fp16; scoring accumulates in fp32). Rows are appended: the prefill's offloaded
// span first, then tokens evicted from the GPU window.
//
// Layout: keys and values are [size][head_dim] 16-bit rows; row i is token i of this store (the
// caller maps store rows to sequence positions).

#include <cstdint>
#include <span>
#include <vector>

#include "common/half.h"

namespace ra::retriever {

enum class KvDtype { kBF16, kF16 };

// "BF16" / "F16" (a checkpoint's dtype string) -> KvDtype; anything else (e.g. "F32") maps to bf16,
// the dtype Llama checkpoints are trained in.
KvDtype kv_dtype_for(const char* checkpoint_dtype);

class KvStore {
 public:
  KvStore(int64_t head_dim, KvDtype dtype);

  // Appends n rows: keys, values: [n][head_dim] float32, rounded to the store's dtype.
  void append(const float* keys, const float* values, int64_t n);
  void reserve(int64_t rows);

  int64_t size() const { return rows_; }
  int64_t head_dim() const { return head_dim_; }
  KvDtype dtype() const { return dtype_; }
  size_t memory_bytes() const { return (k_.capacity() + v_.capacity()) * sizeof(uint16_t); }

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
  int64_t head_dim_;
  KvDtype dtype_;
  int64_t rows_ = 0;
  std::vector<uint16_t> k_;  // [rows][head_dim] bf16 or f16 bits
  std::vector<uint16_t> v_;  // [rows][head_dim]
};

}  // namespace ra::retriever
