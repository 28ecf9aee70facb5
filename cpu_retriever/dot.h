#pragma once
// The inner product every key index scores with, so flat, graph and FAISS-walk scores agree bit for bit.
// Eight independent accumulators let the compiler vectorise the loop with plain SSE2 and without
// -ffast-math (DESIGN §4 forbids it); the summation order is fixed, so results are identical across
// runs and threads.
//
// Keys may be stored as bf16 or f16 (kv_dtype.h): they are widened exactly, element by element, in the
// same order, so a score over a 16-bit row equals dot_f32 over its widened copy, bit for bit.

#include <cstdint>

#include "cpu_retriever/dot_f16c.h"
#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {

// a: [dim] float32, b: [dim] of element type E.
template <typename E>
inline float dot_row_portable(const float* a, const typename E::T* b, int64_t dim) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    for (int l = 0; l < 8; ++l) s[l] += a[j + l] * E::widen(b[j + l]);
  }
  for (int64_t r = 0; r < dim - j && r < 8; ++r) s[r] += a[j + r] * E::widen(b[j + r]);  // dim - j < 8
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// a, b: [dim], both of element type E (two stored keys).
template <typename E>
inline float dot_rows_portable(const typename E::T* a, const typename E::T* b, int64_t dim) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    for (int l = 0; l < 8; ++l) s[l] += E::widen(a[j + l]) * E::widen(b[j + l]);
  }
  for (int64_t r = 0; r < dim - j && r < 8; ++r) s[r] += E::widen(a[j + r]) * E::widen(b[j + r]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// The scorers' entry points: the portable loops, except that f16 rows are widened by F16C where the CPU
// has it (dot_f16c.h: bitwise the same results).
template <typename E>
inline float dot_row(const float* a, const typename E::T* b, int64_t dim) {
  if constexpr (E::kDtype == KvDtype::kF16) {
    static const bool hw = cpu_has_f16c();
    if (hw) return dot_row_f16c(a, b, dim);
  }
  return dot_row_portable<E>(a, b, dim);
}
template <typename E>
inline float dot_rows(const typename E::T* a, const typename E::T* b, int64_t dim) {
  if constexpr (E::kDtype == KvDtype::kF16) {
    static const bool hw = cpu_has_f16c();
    if (hw) return dot_rows_f16c(a, b, dim);
  }
  return dot_rows_portable<E>(a, b, dim);
}

inline float dot_f32(const float* a, const float* b, int64_t dim) { return dot_row<F32Elem>(a, b, dim); }

}  // namespace ra::retriever
