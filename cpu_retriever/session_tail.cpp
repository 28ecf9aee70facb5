#include "cpu_retriever/session_tail.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/partial_state.h"
#include "cpu_retriever/kv_attend.h"

namespace ra::retriever {
namespace {

// Writes x: [dim] float32 as one row of dtype at row (bytes of kv_row_bytes(dtype, dim)).
void write_row(KvDtype dtype, const float* x, int64_t dim, std::byte* row) {
  with_row_elem(dtype, [&](auto e) {
    using E = decltype(e);
    const int64_t bad = narrow_row<E>(x, dim, reinterpret_cast<typename E::T*>(row));
    RA_ASSERT(bad < 0);  // append checked the values first
  });
}

}  // namespace

SessionTail::SessionTail(int64_t n_owned, int64_t head_dim, KvDtypes dtypes)
    : head_dim_(head_dim),
      dtypes_(dtypes),
      key_bytes_(kv_row_bytes(dtypes.key, head_dim)),
      value_bytes_(kv_row_bytes(dtypes.value, head_dim)),
      keys_(static_cast<size_t>(n_owned)),
      values_(static_cast<size_t>(n_owned)) {}

void SessionTail::append(int64_t position, const float* k, const float* v, std::span<const int64_t> owned) {
  RA_ASSERT(owned.size() == keys_.size());
  RA_REQUIRE(positions_.empty() || position > positions_.back(),
             "session tail: token at position {} evicted after position {}", position, positions_.back());
  const auto hd = static_cast<size_t>(head_dim_);
  // Every row checked before any is written: a refused token leaves the tail as it was.
  auto check = [&](const char* side, KvDtype dtype, const float* x) {
    if (dtype != KvDtype::kQ8) return;  // the 16/32-bit roundings take inf and NaN as they are
    for (const int64_t h : owned) {
      for (size_t d = 0; d < hd; ++d) {
        const float value = x[static_cast<size_t>(h) * hd + d];
        RA_REQUIRE(std::isfinite(value),
                   "session tail: the {} of kv head {} at position {}: element {} is {}; an int8 row takes "
                   "finite values only",
                   side, h, position, d, value);
      }
    }
  };
  check("key", dtypes_.key, k);
  check("value", dtypes_.value, v);
  const size_t row = positions_.size();
  positions_.push_back(position);
  for (size_t i = 0; i < owned.size(); ++i) {
    keys_[i].resize((row + 1) * key_bytes_);  // geometric growth; a rewind keeps the capacity
    values_[i].resize((row + 1) * value_bytes_);
    write_row(dtypes_.key, k + static_cast<size_t>(owned[i]) * hd, head_dim_, keys_[i].data() + row * key_bytes_);
    write_row(dtypes_.value, v + static_cast<size_t>(owned[i]) * hd, head_dim_,
              values_[i].data() + row * value_bytes_);
  }
}

void SessionTail::rewind(int64_t position) {
  const auto keep = static_cast<size_t>(std::lower_bound(positions_.begin(), positions_.end(), position) -
                                        positions_.begin());
  positions_.resize(keep);
  for (auto& k : keys_) k.resize(keep * key_bytes_);
  for (auto& v : values_) v.resize(keep * value_bytes_);
}

void SessionTail::clear() {
  positions_.clear();
  for (auto& k : keys_) k.clear();
  for (auto& v : values_) v.clear();
}

float SessionTail::merge_into(size_t i, const float* q, float scale, float lse, float* o, SessionScratch& scratch,
                              SearchStats* stats) const {
  if (positions_.empty()) return lse;
  const size_t n = positions_.size();
  const auto hd = static_cast<size_t>(head_dim_);
  if (scratch.weights.size() < n) scratch.weights.resize(n);
  if (scratch.o.size() < hd) scratch.o.resize(hd);
  const KvBlock kv{keys_[i].data(), values_[i].data(), dtypes_, head_dim_};
  const float tail_lse = attend_rows(kv, q, nullptr, static_cast<int64_t>(n), scale,
                                     std::span<float>(scratch.weights.data(), n), scratch.o.data());
  ra::merge_into(lse, o, tail_lse, scratch.o.data(), hd);
  if (stats) stats->distance_computations += static_cast<int64_t>(n);
  return lse;
}

}  // namespace ra::retriever
