#include "cpu_retriever/session_tail.h"

#include <algorithm>

#include "common/error.h"
#include "common/partial_state.h"

namespace ra::retriever {

SessionTail::SessionTail(int64_t n_owned, int64_t head_dim, KvDtype dtype)
    : head_dim_(head_dim), dtype_(dtype), keys_(static_cast<size_t>(n_owned)), values_(static_cast<size_t>(n_owned)) {}

void SessionTail::append(int64_t position, const float* k, const float* v, std::span<const int64_t> owned) {
  RA_ASSERT(owned.size() == keys_.size());
  RA_REQUIRE(positions_.empty() || position > positions_.back(),
             "session tail: token at position {} evicted after position {}", position, positions_.back());
  positions_.push_back(position);
  const auto hd = static_cast<size_t>(head_dim_);
  const size_t at = (positions_.size() - 1) * hd;
  with_kv_elem(dtype_, [&](auto e) {
    using E = decltype(e);
    for (size_t i = 0; i < owned.size(); ++i) {
      const float* src_k = k + static_cast<size_t>(owned[i]) * hd;
      const float* src_v = v + static_cast<size_t>(owned[i]) * hd;
      keys_[i].resize(at + hd);  // geometric growth; a rewind keeps the capacity
      values_[i].resize(at + hd);
      for (size_t d = 0; d < hd; ++d) keys_[i][at + d] = E::widen(E::narrow(src_k[d]));
      for (size_t d = 0; d < hd; ++d) values_[i][at + d] = E::widen(E::narrow(src_v[d]));
    }
  });
}

void SessionTail::rewind(int64_t position) {
  const auto keep = static_cast<size_t>(std::lower_bound(positions_.begin(), positions_.end(), position) -
                                        positions_.begin());
  positions_.resize(keep);
  for (auto& k : keys_) k.resize(keep * static_cast<size_t>(head_dim_));
  for (auto& v : values_) v.resize(keep * static_cast<size_t>(head_dim_));
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
  const float tail_lse = ra::attend(q, keys_[i].data(), values_[i].data(), n, hd, hd, scale,
                                    std::span<float>(scratch.weights.data(), n), scratch.o.data());
  ra::merge_into(lse, o, tail_lse, scratch.o.data(), hd);
  if (stats) stats->distance_computations += static_cast<int64_t>(n);
  return lse;
}

}  // namespace ra::retriever
