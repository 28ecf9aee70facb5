#include "cpu_retriever/kv_attend.h"

#include <algorithm>

#include "common/error.h"
#include "common/partial_state.h"
#include "cpu_retriever/dot.h"

namespace ra::retriever {
namespace {

// The rows of ids are scattered (a search's top-k): the score loop prefetches the key and value rows
// kAhead ahead, so about that many rows load in parallel instead of one miss at a time.
constexpr int64_t kAhead = 8;

inline void prefetch_row(const void* base, int64_t i, size_t bytes) {
  const char* p = static_cast<const char*>(base) + static_cast<size_t>(i) * bytes;
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
  __builtin_prefetch(p + bytes - 1, 0, 3);  // a row of dim + 4 bytes may end in one more line
}

template <typename EK>
void score_rows(const KvBlock& kv, const float* q, const int64_t* ids, int64_t n, float scale, float* scores) {
  const int64_t dim = kv.head_dim;
  const size_t k_bytes = row_bytes<EK>(dim), v_bytes = kv_row_bytes(kv.dtypes.value, dim);
  auto prefetch = [&](int64_t j) {
    if (j >= n) return;
    const int64_t row = ids ? ids[j] : j;
    prefetch_row(kv.keys, row, k_bytes);
    prefetch_row(kv.values, row, v_bytes);  // the values are read next, in the same order
  };
  for (int64_t j = 0; j < std::min(n, kAhead); ++j) prefetch(j);
  for (int64_t j = 0; j < n; ++j) {
    prefetch(j + kAhead);
    scores[j] = dot_row<EK>(q, row_at<EK>(kv.keys, ids ? ids[j] : j, dim), dim) * scale;
  }
}

template <typename EV>
void sum_values(const KvBlock& kv, const int64_t* ids, std::span<const float> weights, float* o) {
  const int64_t dim = kv.head_dim;
  std::fill(o, o + dim, 0.0f);
  for (size_t j = 0; j < weights.size(); ++j) {
    const float w = weights[j];
    if (w == 0.0f) continue;
    add_scaled_row<EV>(w, row_at<EV>(kv.values, ids ? ids[j] : static_cast<int64_t>(j), dim), dim, o);
  }
}

}  // namespace

float attend_rows(const KvBlock& kv, const float* q, const int64_t* ids, int64_t n, float scale,
                  std::span<float> scratch, float* o) {
  RA_ASSERT(static_cast<int64_t>(scratch.size()) >= n && n >= 0);
  const std::span<float> scores = scratch.first(static_cast<size_t>(n));
  with_row_elem(kv.dtypes.key, [&](auto e) { score_rows<decltype(e)>(kv, q, ids, n, scale, scores.data()); });
  const float lse = scores_to_weights(scores);
  with_row_elem(kv.dtypes.value, [&](auto e) { sum_values<decltype(e)>(kv, ids, scores, o); });
  return lse;
}

}  // namespace ra::retriever
