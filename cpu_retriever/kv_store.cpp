#include "cpu_retriever/kv_store.h"

#include <algorithm>

#include "common/error.h"
#include "common/partial_state.h"
#include "cpu_retriever/dot.h"

namespace ra::retriever {
namespace {

// Partial attention over rows ids[0..n) (or rows 0..n when ids is null) of k, v: [rows][head_dim].
template <typename E>
float attend_rows(const typename E::T* k, const typename E::T* v, int64_t head_dim, const float* q,
                  const int64_t* ids, int64_t n, float scale, std::span<float> scratch, float* o) {
  RA_ASSERT(static_cast<int64_t>(scratch.size()) >= n);
  std::span<float> scores = scratch.first(static_cast<size_t>(n));
  // The rows of ids are scattered (a search's top-k): each loop prefetches the row kAhead ahead, so
  // about that many rows load in parallel instead of one miss at a time.
  constexpr int64_t kAhead = 8;
  const int64_t row_bytes = head_dim * static_cast<int64_t>(sizeof(typename E::T));
  auto prefetch = [&](const typename E::T* base, int64_t j) {
    if (j >= n) return;
    const char* p = reinterpret_cast<const char*>(base + (ids ? ids[j] : j) * head_dim);
    for (int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
  };
  for (int64_t j = 0; j < std::min(n, kAhead); ++j) {
    prefetch(k, j);
    prefetch(v, j);
  }
  for (int64_t j = 0; j < n; ++j) {
    prefetch(k, j + kAhead);
    prefetch(v, j + kAhead);  // the values are read next, in the same order
    scores[j] = dot_row<E>(q, k + (ids ? ids[j] : j) * head_dim, head_dim) * scale;
  }
  const float lse = scores_to_weights(scores);
  std::fill(o, o + head_dim, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float w = scores[j];
    if (w == 0.0f) continue;
    const typename E::T* row = v + (ids ? ids[j] : j) * head_dim;
    for (int64_t d = 0; d < head_dim; ++d) o[d] += w * E::widen(row[d]);
  }
  return lse;
}

}  // namespace

KvStore::KvStore(int64_t head_dim, KvDtype dtype, int64_t max_rows) : head_dim_(head_dim), dtype_(dtype) {
  RA_REQUIRE(head_dim > 0, "KvStore: head_dim must be positive, got {}", head_dim);
  keys_ = std::make_shared<RowArena>(dtype, head_dim, max_rows);
  keys_view_ = keys_;
  values_ = std::make_unique<RowArena>(dtype, head_dim, max_rows);
}

void KvStore::append(const float* keys, const float* values, int64_t n) {
  RA_REQUIRE(n <= keys_->max_rows() - rows_, "KvStore: {} more rows overflow its {} (max_rows)", n,
             keys_->max_rows());
  values_->append(values, n);
  keys_->append(keys, n);  // last: publishes the rows to concurrent key readers
  rows_ += n;
}

void KvStore::append_raw(const void* keys, const void* values, int64_t n) {
  RA_REQUIRE(n <= keys_->max_rows() - rows_, "KvStore: {} more rows overflow its {} (max_rows)", n,
             keys_->max_rows());
  values_->append_raw(values, n);
  keys_->append_raw(keys, n);  // last, as in append
  rows_ += n;
}

void KvStore::key(int64_t i, float* out) const {
  RA_ASSERT(i >= 0 && i < rows_);
  keys_->widen(i, out);
}

float KvStore::attend(const float* q, std::span<const int64_t> ids, float scale, std::span<float> scratch,
                      float* o) const {
  for (int64_t id : ids) RA_ASSERT_MSG(id >= 0 && id < rows_, "row {} of a store of {}", id, rows_);
  return attend_impl(q, ids.data(), static_cast<int64_t>(ids.size()), scale, scratch, o);
}

float KvStore::attend_all(const float* q, float scale, std::span<float> scratch, float* o) const {
  return attend_impl(q, nullptr, rows_, scale, scratch, o);
}

float KvStore::attend_impl(const float* q, const int64_t* ids, int64_t n, float scale, std::span<float> scratch,
                           float* o) const {
  return with_kv_elem(dtype_, [&](auto e) {
    using E = decltype(e);
    const auto* k = static_cast<const typename E::T*>(keys_->data());
    const auto* v = static_cast<const typename E::T*>(values_->data());
    return attend_rows<E>(k, v, head_dim_, q, ids, n, scale, scratch, o);
  });
}

}  // namespace ra::retriever
