#pragma once
// The inner product every key index scores with, so flat, graph and FAISS-walk scores agree bit for bit.
// Eight independent accumulators let the compiler vectorise the loop with plain SSE2 and without
// -ffast-math (DESIGN §4 forbids it); the summation order is fixed, so results are identical across
// runs and threads. Where the CPU has AVX2 and F16C, the same eight lanes run as one 256-bit register
// instead (dot_x86.h), with bitwise the same results.
//
// Keys may be stored as bf16 or f16 (kv_dtype.h): they are widened exactly, element by element, in the
// same order, so a score over a 16-bit row equals dot_f32 over its widened copy, bit for bit. int8 rows
// with a scale per row (kv_int8.h) are scored by dot_q8.h: scale · Σ q_j · code_j over sixteen lanes.

#include <cstdint>

#include "cpu_retriever/dot_q8.h"
#include "cpu_retriever/dot_x86.h"
#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {

// a: [dim] float32, b: [dim] of element type E.
template <typename E>
inline float dot_row_portable(const float* a, const typename E::T* b, int64_t dim) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    return dot_q8_portable(a, b, dim);
  } else {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= dim; j += 8) {
      for (int l = 0; l < 8; ++l) s[l] += a[j + l] * E::widen(b[j + l]);
    }
    for (int64_t r = 0; r < dim - j && r < 8; ++r) s[r] += a[j + r] * E::widen(b[j + r]);  // dim - j < 8
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  }
}

// a, b: [dim], both of element type E (two stored keys).
template <typename E>
inline float dot_rows_portable(const typename E::T* a, const typename E::T* b, int64_t dim) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    return dot_rows_q8(a, b, dim);
  } else {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= dim; j += 8) {
      for (int l = 0; l < 8; ++l) s[l] += E::widen(a[j + l]) * E::widen(b[j + l]);
    }
    for (int64_t r = 0; r < dim - j && r < 8; ++r) s[r] += E::widen(a[j + r]) * E::widen(b[j + r]);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  }
}

// The scorers' entry points: the 256-bit loops of dot_x86.h where the CPU has AVX2 and F16C (bitwise
// the same results), else the portable loops; int8 rows through dot_q8.h's own dispatch (AVX-512 too).
template <typename E>
inline float dot_row(const float* a, const typename E::T* b, int64_t dim) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    return dot_q8(a, b, dim);
  } else {
    static const bool simd = cpu_has_simd_dot();
    if (simd) {
      if constexpr (E::kDtype == KvDtype::kF32) return dot_row_f32_avx2(a, b, dim);
      if constexpr (E::kDtype == KvDtype::kBF16) return dot_row_bf16_avx2(a, b, dim);
      if constexpr (E::kDtype == KvDtype::kF16) return dot_row_f16_avx2(a, b, dim);
      if constexpr (E::kDtype == KvDtype::kI8) return dot_row_i8_avx2(a, b, dim);
    }
    return dot_row_portable<E>(a, b, dim);
  }
}
template <typename E>
inline float dot_rows(const typename E::T* a, const typename E::T* b, int64_t dim) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    return dot_rows_q8(a, b, dim);
  } else {
    static const bool simd = cpu_has_simd_dot();
    if (simd) {
      if constexpr (E::kDtype == KvDtype::kF32) return dot_row_f32_avx2(a, b, dim);
      if constexpr (E::kDtype == KvDtype::kBF16) return dot_rows_bf16_avx2(a, b, dim);
      if constexpr (E::kDtype == KvDtype::kF16) return dot_rows_f16_avx2(a, b, dim);
    }
    return dot_rows_portable<E>(a, b, dim);
  }
}

// Four rows at once: out[r] = dot_row<E>(a, b[r], dim), bitwise (b: 4 rows of [dim]; out: [4]).
template <typename E>
inline void dot_row_x4(const float* a, const typename E::T* const* b, int64_t dim, float* out) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    dot_q8_x4(a, b, dim, out);
  } else {
    static const bool simd = cpu_has_simd_dot();
    if (simd) {
      if constexpr (E::kDtype == KvDtype::kF32) return dot_row_x4_f32_avx2(a, b, dim, out);
      if constexpr (E::kDtype == KvDtype::kBF16) return dot_row_x4_bf16_avx2(a, b, dim, out);
      if constexpr (E::kDtype == KvDtype::kF16) return dot_row_x4_f16_avx2(a, b, dim, out);
      if constexpr (E::kDtype == KvDtype::kI8) return dot_row_x4_i8_avx2(a, b, dim, out);
    }
    for (int r = 0; r < 4; ++r) out[r] = dot_row_portable<E>(a, b[r], dim);
  }
}

// One stored row against four float32 rows: out[r] = dot_row<E>(a[r], b, dim), bitwise (a: 4 rows of
// [dim]; out: [4]). With a[r] the widened copy of a stored row s_r, out[r] is also dot_row<E>(b widened,
// s_r): each product is the same pair of floats. Float32, bf16 and f16 rows (what widens exactly).
template <typename E>
inline void dot_widened_x4(const typename E::T* b, const float* const* a, int64_t dim, float* out) {
  static_assert(E::kDtype == KvDtype::kF32 || E::kDtype == KvDtype::kBF16 || E::kDtype == KvDtype::kF16);
  static const bool simd = cpu_has_simd_dot();
  if (simd) {
    if constexpr (E::kDtype == KvDtype::kBF16) return dot_widened_x4_bf16_avx2(b, a, dim, out);
    if constexpr (E::kDtype == KvDtype::kF16) return dot_widened_x4_f16_avx2(b, a, dim, out);
  }
  for (int r = 0; r < 4; ++r) out[r] = dot_row<E>(a[r], b, dim);  // float32: dot_row_f32_avx2 when simd
}

inline float dot_f32(const float* a, const float* b, int64_t dim) { return dot_row<F32Elem>(a, b, dim); }

}  // namespace ra::retriever
