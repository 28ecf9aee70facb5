#include "cpu_retriever/kv_store.h"

#include <cstring>
#include <string_view>

#include "common/error.h"
#include "common/partial_state.h"

namespace ra::retriever {
namespace {

// Element types of the store, each with its widening to float32.
struct Bf16Row {
  using T = uint16_t;
  static float widen(T bits) { return to_float(bf16{bits}); }
};
struct F16Row {
  using T = uint16_t;
  static float widen(T bits) { return to_float(f16{bits}); }
};
struct F32Row {
  using T = float;
  static float widen(T x) { return x; }
};

// Partial attention over rows ids[0..n) (or rows 0..n when ids is null) of k, v: [rows][head_dim].
template <typename Row>
float attend_rows(const typename Row::T* k, const typename Row::T* v, int64_t head_dim, const float* q,
                  const int64_t* ids, int64_t n, float scale, std::span<float> scratch, float* o) {
  RA_ASSERT(static_cast<int64_t>(scratch.size()) >= n);
  std::span<float> scores = scratch.first(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const typename Row::T* row = k + (ids ? ids[j] : j) * head_dim;
    float acc[8] = {};
    int64_t d = 0;
    for (; d + 8 <= head_dim; d += 8) {
      for (int u = 0; u < 8; ++u) acc[u] += q[d + u] * Row::widen(row[d + u]);
    }
    float dot = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; d < head_dim; ++d) dot += q[d] * Row::widen(row[d]);
    scores[j] = dot * scale;
  }
  const float lse = scores_to_weights(scores);
  std::fill(o, o + head_dim, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float w = scores[j];
    if (w == 0.0f) continue;
    const typename Row::T* row = v + (ids ? ids[j] : j) * head_dim;
    for (int64_t d = 0; d < head_dim; ++d) o[d] += w * Row::widen(row[d]);
  }
  return lse;
}

}  // namespace

KvDtype kv_dtype_for(const char* checkpoint_dtype) {
  const std::string_view d(checkpoint_dtype);
  if (d == "F16") return KvDtype::kF16;
  if (d == "F32") return KvDtype::kF32;
  return KvDtype::kBF16;
}

KvStore::KvStore(int64_t head_dim, KvDtype dtype) : head_dim_(head_dim), dtype_(dtype) {
  RA_REQUIRE(head_dim > 0, "KvStore: head_dim must be positive, got {}", head_dim);
}

void KvStore::reserve(int64_t rows) {
  const auto count = static_cast<size_t>(rows * head_dim_);
  if (dtype_ == KvDtype::kF32) {
    kf_.reserve(count);
    vf_.reserve(count);
  } else {
    k_.reserve(count);
    v_.reserve(count);
  }
}

void KvStore::append(const float* keys, const float* values, int64_t n) {
  const size_t count = static_cast<size_t>(n * head_dim_);
  if (dtype_ == KvDtype::kF32) {
    kf_.insert(kf_.end(), keys, keys + count);
    vf_.insert(vf_.end(), values, values + count);
    rows_ += n;
    return;
  }
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
  const size_t base = static_cast<size_t>(i * head_dim_);
  switch (dtype_) {
    case KvDtype::kBF16:
      for (int64_t d = 0; d < head_dim_; ++d) out[d] = Bf16Row::widen(k_[base + d]);
      break;
    case KvDtype::kF16:
      for (int64_t d = 0; d < head_dim_; ++d) out[d] = F16Row::widen(k_[base + d]);
      break;
    case KvDtype::kF32:
      std::memcpy(out, kf_.data() + base, static_cast<size_t>(head_dim_) * sizeof(float));
      break;
  }
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
  switch (dtype_) {
    case KvDtype::kBF16:
      return attend_rows<Bf16Row>(k_.data(), v_.data(), head_dim_, q, ids, n, scale, scratch, o);
    case KvDtype::kF16:
      return attend_rows<F16Row>(k_.data(), v_.data(), head_dim_, q, ids, n, scale, scratch, o);
    case KvDtype::kF32:
      return attend_rows<F32Row>(kf_.data(), vf_.data(), head_dim_, q, ids, n, scale, scratch, o);
  }
  RA_ASSERT(false);
  return kEmptyLse;
}

}  // namespace ra::retriever
