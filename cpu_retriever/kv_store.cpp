#include "cpu_retriever/kv_store.h"

#include "common/error.h"
#include "cpu_retriever/kv_attend.h"

namespace ra::retriever {

KvStore::KvStore(int64_t head_dim, KvDtypes dtypes, int64_t max_rows) : head_dim_(head_dim), dtypes_(dtypes) {
  RA_REQUIRE(head_dim > 0, "KvStore: head_dim must be positive, got {}", head_dim);
  for (const KvDtype d : {dtypes.key, dtypes.value}) {
    RA_REQUIRE(d != KvDtype::kI8, "KvStore: {} is no KV storage dtype", kv_dtype_name(d));
  }
  keys_ = std::make_shared<RowArena>(dtypes.key, head_dim, max_rows);
  keys_view_ = keys_;
  values_ = std::make_unique<RowArena>(dtypes.value, head_dim, max_rows);
}

void KvStore::append(KvRows keys, KvRows values, int64_t n) {
  RA_REQUIRE(n <= keys_->max_rows() - rows_, "KvStore: {} more rows overflow its {} (max_rows)", n,
             keys_->max_rows());
  // Both sides checked before either is written, so a refused row leaves keys and values aligned.
  keys_->check_codable(keys, n, "key");
  values_->check_codable(values, n, "value");
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
  const KvBlock kv{keys_->data(), values_->data(), dtypes_, head_dim_};
  return attend_rows(kv, q, ids.data(), static_cast<int64_t>(ids.size()), scale, scratch, o);
}

float KvStore::attend_all(const float* q, float scale, std::span<float> scratch, float* o) const {
  const KvBlock kv{keys_->data(), values_->data(), dtypes_, head_dim_};
  return attend_rows(kv, q, nullptr, rows_, scale, scratch, o);
}

}  // namespace ra::retriever
