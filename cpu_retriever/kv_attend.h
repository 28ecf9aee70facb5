#pragma once
// Exact partial attention (DESIGN §4) of one query over stored key and value rows, in the rows' own
// dtypes: the one kernel behind KvStore::attend (a search's top-k) and SessionTail::merge_into (a
// session's evicted tokens), so that a row is scored by attention exactly as the indexes score it.
//
//   s_j = (q · k_j) · scale          (dot.h: dot_row of the key dtype, float32)
//   lse = m + ln Σ exp(s_j − m),  o = Σ exp(s_j − lse) · v_j     (scores_to_weights, float32)
//
// int8 values (kv_int8.h) enter as (w_j · scale_v,j) · code_v,j (add_scaled_row).

#include <cstdint>
#include <span>

#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {

// Blocks of rows: keys: [rows][head_dim] of dtypes.key, values: [rows][head_dim] of dtypes.value, each
// row kv_row_bytes(dtype, head_dim) bytes (an int8 row ends with its scale).
struct KvBlock {
  const void* keys = nullptr;
  const void* values = nullptr;
  KvDtypes dtypes;
  int64_t head_dim = 0;
};

// Partial attention of q: [head_dim] float32 over rows ids[0, n) of kv (or rows [0, n) when ids is
// null): o: [head_dim] float32; returns lse (−inf and o = 0 for n = 0). scratch: >= n floats (the
// weights; nothing is allocated).
float attend_rows(const KvBlock& kv, const float* q, const int64_t* ids, int64_t n, float scale,
                  std::span<float> scratch, float* o);

}  // namespace ra::retriever
