#pragma once
// The inner product of a float32 query with an int8 KV row (kv_int8.h), for dot.h: every scorer of an
// int8 store (flat index, graph search, flat tails, the recall audit, attention) reads the rows through
// these functions, so an index's score of a key is exactly attention's.
//
//   q · k̂ = scale_k · Σ_j q_j · code_j
//
// The sum runs in float32 over sixteen lanes: lane l accumulates q_j · code_j for j ≡ l (mod 16) over
// the whole blocks of sixteen, the tail (dim % 16 elements) is added to lanes 0.. in order, the lanes
// are summed in q8_lane_sum's fixed order, and the sum is multiplied by the scale last. Each product
// q_j · code_j is one float32 rounding (code_j is an exact small integer) and the adds are float32, so
// the score is exact up to float32 summation, like the 16-bit rows' (no query quantisation). It differs
// from dot_f32 over the dequantised row (scale · code_j rounded per element) by those roundings only.
//
// The same loop runs as one 512-bit register (AVX-512F) or two 256-bit ones (AVX2), chosen at run time
// (the build targets baseline x86-64): a multiply then an add per lane (no fused multiply-add: the
// kernels' file is built with -ffp-contract=off), the tail and the final sum in scalar code shared with
// the portable loop, so all three paths give the same bits.
//
// Why not VNNI (vpdpbusd) or AMX-INT8: both need the query quantised to 8 bits too, which adds an error
// of up to half a query step to every product and changes the ranking against attention's float
// scores; and a decode search is bound by the cache lines it loads, not by these multiplies.

#include <cstdint>

#include "cpu_retriever/kv_int8.h"

namespace ra::retriever {

// s: [16] lane sums -> their total, in the one order every path uses.
inline float q8_lane_sum(const float* s) {
  float t[8];
  for (int l = 0; l < 8; ++l) t[l] = s[l] + s[l + 8];
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

// q: [dim] float32; row: [dim] int8 codes then the float32 scale.
inline float dot_q8_portable(const float* q, const int8_t* row, int64_t dim) {
  float s[16] = {};
  int64_t j = 0;
  for (; j + 16 <= dim; j += 16) {
    for (int l = 0; l < 16; ++l) s[l] += q[j + l] * static_cast<float>(row[j + l]);
  }
  for (int64_t r = 0; j + r < dim; ++r) s[r] += q[j + r] * static_cast<float>(row[j + r]);
  return q8_row_scale(row, dim) * q8_lane_sum(s);
}

// Two stored int8 rows: scale_a · scale_b · Σ code_a · code_b, the sum exact in integers (the graph
// build's and merge's key-to-key geometry; attention never uses it).
inline float dot_rows_q8(const int8_t* a, const int8_t* b, int64_t dim) {
  int64_t sum = 0;
  for (int64_t j = 0; j < dim; ++j) sum += int32_t{a[j]} * int32_t{b[j]};
  return (q8_row_scale(a, dim) * q8_row_scale(b, dim)) * static_cast<float>(sum);
}

// The vector paths (dot_q8_x86.cpp). Call each only where q8_simd_level() allows it.
enum class Q8Simd { kPortable, kAvx2, kAvx512 };
// The widest path this CPU has, checked once: AVX-512F, else AVX2 (with F16C: cpu_has_simd_dot), else
// portable. RA_SIMD_DOT=0 in the environment: portable; RA_SIMD_DOT=avx2: at most AVX2 (to measure).
Q8Simd q8_simd_level();
float dot_q8_avx2(const float* q, const int8_t* row, int64_t dim);
float dot_q8_avx512(const float* q, const int8_t* row, int64_t dim);
// rows: 4 rows; out: [4], out[r] bitwise dot_q8_*(q, rows[r], dim).
void dot_q8_x4_avx2(const float* q, const int8_t* const* rows, int64_t dim, float* out);
void dot_q8_x4_avx512(const float* q, const int8_t* const* rows, int64_t dim, float* out);

inline float dot_q8(const float* q, const int8_t* row, int64_t dim) {
  static const Q8Simd simd = q8_simd_level();
  if (simd == Q8Simd::kAvx512) return dot_q8_avx512(q, row, dim);
  if (simd == Q8Simd::kAvx2) return dot_q8_avx2(q, row, dim);
  return dot_q8_portable(q, row, dim);
}

inline void dot_q8_x4(const float* q, const int8_t* const* rows, int64_t dim, float* out) {
  static const Q8Simd simd = q8_simd_level();
  if (simd == Q8Simd::kAvx512) return dot_q8_x4_avx512(q, rows, dim, out);
  if (simd == Q8Simd::kAvx2) return dot_q8_x4_avx2(q, rows, dim, out);
  for (int r = 0; r < 4; ++r) out[r] = dot_q8_portable(q, rows[r], dim);
}

}  // namespace ra::retriever
