#pragma once
// Keys and values of one (layer, kv head) on the CPU, in the model's dtype (DESIGN §4: KV on the CPU
// is bf16 or fp16; scoring accumulates in fp32). A float32 checkpoint keeps float32, so a pipeline run
// with every key retrieved reproduces full attention to fp32 rounding. Rows are appended: the prefill's
// offloaded span first, then tokens evicted from the GPU window.
//
// Layout: keys and values are [size][head_dim] rows of the store's dtype; row i is token i of this
// store (the caller maps store rows to sequence positions).

#include <cstdint>
#include <span>
#include <vector>

#include "common/half.h"

namespace ra::retriever {

enum class KvDtype { kBF16, kF16, kF32 };

// A checkpoint's dtype string -> KvDtype: "F16" -> f16, "F32" -> f32, anything else ("BF16", and
// unknown strings) -> bf16, the dtype Llama checkpoints are trained in.
KvDtype kv_dtype_for(const char* checkpoint_dtype);

class KvStore {
 public:
  KvStore(int64_t head_dim, KvDtype dtype);

  // Appends n rows: keys, values: [n][head_dim] float32, rounded to the store's dtype. Not safe
  // against concurrent reads: the owner serialises appends with searches.
  void append(const float* keys, const float* values, int64_t n);
  void reserve(int64_t rows);

  int64_t size() const { return rows_; }
  int64_t head_dim() const { return head_dim_; }
  KvDtype dtype() const { return dtype_; }
  size_t memory_bytes() const {
    return (k_.capacity() + v_.capacity()) * sizeof(uint16_t) + (kf_.capacity() + vf_.capacity()) * sizeof(float);
  }

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
  std::vector<uint16_t> k_;  // [rows][head_dim] bf16 or f16 bits (16-bit dtypes)
  std::vector<uint16_t> v_;  // [rows][head_dim]
  std::vector<float> kf_;    // [rows][head_dim] float32 (kF32 only)
  std::vector<float> vf_;    // [rows][head_dim]
};

}  // namespace ra::retriever
