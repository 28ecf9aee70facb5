#include "cpu_retriever/kv_store.h"

#include <cstring>
#include <string_view>

#include "common/error.h"
#include "common/partial_state.h"

namespace ra::retriever {
namespace {

inline float widen(uint16_t bits, KvDtype dtype) {
  return dtype == KvDtype::kBF16 ? to_float(bf16{bits}) : to_float(f16{bits});
}

template <KvDtype D>
inline float widen_t(uint16_t bits) {
  if constexpr (D == KvDtype::kBF16) {
    return to_float(bf16{bits});
  } else {
    return to_float(f16{bits});
  }
}

template <KvDtype D>
float attend_rows(const uint16_t* k, const uint16_t* v, int64_t head_dim, const float* q, const int64_t* ids,
                  int64_t n, float scale, std::span<float> scratch, float* o) {
  RA_ASSERT(static_cast<int64_t>(scratch.size()) >= n);
  std::span<float> scores = scratch.first(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* row = k + (ids ? ids[j] : j) * head_dim;
    float acc[8] = {};
    int64_t d = 0;
    for (; d + 8 <= head_dim; d += 8) {
      for (int u = 0; u < 8; ++u) acc[u] += q[d + u] * widen_t<D>(row[d + u]);
    }
    float dot = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; d < head_dim; ++d) dot += q[d] * widen_t<D>(row[d]);
    scores[j] = dot * scale;
  }
  const float lse = scores_to_weights(scores);
  std::fill(o, o + head_dim, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float w = scores[j];
    if (w == 0.0f) continue;
    const uint16_t* row = v + (ids ? ids[j] : j) * head_dim;
    for (int64_t d = 0; d < head_dim; ++d) o[d] += w * widen_t<D>(row[d]);
  }
  return lse;
}

}  // namespace

KvDtype kv_dtype_for(const char* checkpoint_dtype) {
  return std::string_view(checkpoint_dtype) == "F16" ? KvDtype::kF16 : KvDtype::kBF16;
}

KvStore::KvStore(int64_t head_dim, KvDtype dtype) : head_dim_(head_dim), dtype_(dtype) {
  RA_REQUIRE(head_dim > 0, "KvStore: head_dim must be positive, got {}", head_dim);
}

void KvStore::reserve(int64_t rows) {
  k_.reserve(static_cast<size_t>(rows * head_dim_));
  v_.reserve(static_cast<size_t>(rows * head_dim_));
}

void KvStore::append(const float* keys, const float* values, int64_t n) {
  const size_t count = static_cast<size_t>(n * head_dim_);
  const size_t base = k_.size();
  k_.resize(base + count);
  v_.resize(base + count);
  for (size_t i = 0; i < count; ++i) {
    if (dtype_ == KvDtype::kBF16) {
      k_[base + i] = to_bf16(keys[i]).bits;
      v_[base + i] = to_bf16(values[i]).bits;
    } else {
      k_[base + i] = to_f16(keys[i]).bits;
      v_[base + i] = to_f16(values[i]).bits;
    }
  }
  rows_ += n;
}

void KvStore::key(int64_t i, float* out) const {
  RA_ASSERT(i >= 0 && i < rows_);
  for (int64_t d = 0; d < head_dim_; ++d) out[d] = widen(k_[i * head_dim_ + d], dtype_);
}

float KvStore::attend(const float* q, std::span<const int64_t> ids, float scale, std::span<float> scratch,
                      float* o) const {
  for (int64_t id : ids) RA_ASSERT_MSG(id >= 0 && id < rows_, "row {} of a store of {}", id, rows_);
  const auto n = static_cast<int64_t>(ids.size());
  return dtype_ == KvDtype::kBF16
             ? attend_rows<KvDtype::kBF16>(k_.data(), v_.data(), head_dim_, q, ids.data(), n, scale, scratch, o)
             : attend_rows<KvDtype::kF16>(k_.data(), v_.data(), head_dim_, q, ids.data(), n, scale, scratch, o);
}

float KvStore::attend_all(const float* q, float scale, std::span<float> scratch, float* o) const {
  return dtype_ == KvDtype::kBF16
             ? attend_rows<KvDtype::kBF16>(k_.data(), v_.data(), head_dim_, q, nullptr, rows_, scale, scratch, o)
             : attend_rows<KvDtype::kF16>(k_.data(), v_.data(), head_dim_, q, nullptr, rows_, scale, scratch, o);
}

}  // namespace ra::retriever
