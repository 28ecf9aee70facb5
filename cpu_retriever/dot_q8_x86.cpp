// The int8-row inner products of dot_q8.h with the CPU's vector unit: one 512-bit register of sixteen
// lanes (AVX-512F) or two 256-bit ones (AVX2), each lane exactly the portable loop's partial sum. Built
// with -ffp-contract=off (CMakeLists.txt): AVX-512F has fused multiply-adds, and a contracted q · code +
// s would round once where the portable loop rounds twice.

#include <cstdlib>
#include <string_view>

#include "cpu_retriever/dot_q8.h"
#include "cpu_retriever/dot_x86.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's _mm512_cvtepi32_ps passes _mm512_undefined_ps() as its unused merge source, which
// -Wmaybe-uninitialized reports once inlined: a false positive (the mask selects every lane).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define RA_Q8_X86 1
#define RA_AVX2_TARGET __attribute__((target("avx2")))
#define RA_AVX512_TARGET __attribute__((target("avx512f")))
#endif

namespace ra::retriever {

#ifdef RA_Q8_X86

namespace {

RA_AVX2_TARGET inline __m256 codes8(const int8_t* p) {  // eight codes as float32 lanes (exact)
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
RA_AVX512_TARGET inline __m512 codes16(const int8_t* p) {  // sixteen codes as float32 lanes (exact)
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// The scalar end every path shares: the tail into lanes 0.., the lanes' sum, the scale.
inline float finish(float* s, const float* q, const int8_t* row, int64_t j, int64_t dim) {
  for (int64_t r = 0; j + r < dim; ++r) s[r] += q[j + r] * static_cast<float>(row[j + r]);
  return q8_row_scale(row, dim) * q8_lane_sum(s);
}

}  // namespace

Q8Simd q8_simd_level() {
  static const Q8Simd level = [] {
    if (!cpu_has_simd_dot()) return Q8Simd::kPortable;  // also RA_SIMD_DOT=0
    const char* cap = std::getenv("RA_SIMD_DOT");
    if (cap != nullptr && std::string_view(cap) == "avx2") return Q8Simd::kAvx2;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? Q8Simd::kAvx512 : Q8Simd::kAvx2;
  }();
  return level;
}

RA_AVX2_TARGET float dot_q8_avx2(const float* q, const int8_t* row, int64_t dim) {
  __m256 lo = _mm256_setzero_ps(), hi = lo;  // lanes 0-7 and 8-15
  int64_t j = 0;
  for (; j + 16 <= dim; j += 16) {
    lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(q + j), codes8(row + j)));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(q + j + 8), codes8(row + j + 8)));
  }
  alignas(32) float s[16];
  _mm256_store_ps(s, lo);
  _mm256_store_ps(s + 8, hi);
  return finish(s, q, row, j, dim);
}

RA_AVX2_TARGET void dot_q8_x4_avx2(const float* q, const int8_t* const* rows, int64_t dim, float* out) {
  __m256 lo[4], hi[4];
  for (int r = 0; r < 4; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= dim; j += 16) {
    const __m256 qlo = _mm256_loadu_ps(q + j), qhi = _mm256_loadu_ps(q + j + 8);
    for (int r = 0; r < 4; ++r) {
      lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(qlo, codes8(rows[r] + j)));
      hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(qhi, codes8(rows[r] + j + 8)));
    }
  }
  for (int r = 0; r < 4; ++r) {
    alignas(32) float s[16];
    _mm256_store_ps(s, lo[r]);
    _mm256_store_ps(s + 8, hi[r]);
    out[r] = finish(s, q, rows[r], j, dim);
  }
}

RA_AVX512_TARGET float dot_q8_avx512(const float* q, const int8_t* row, int64_t dim) {
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= dim; j += 16) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(q + j), codes16(row + j)));
  alignas(64) float s[16];
  _mm512_store_ps(s, acc);
  return finish(s, q, row, j, dim);
}

// Four rows: four independent add chains (the single row's chain is latency-bound, dot.h).
RA_AVX512_TARGET void dot_q8_x4_avx512(const float* q, const int8_t* const* rows, int64_t dim, float* out) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t j = 0;
  for (; j + 16 <= dim; j += 16) {
    const __m512 qj = _mm512_loadu_ps(q + j);
    acc0 = _mm512_add_ps(acc0, _mm512_mul_ps(qj, codes16(rows[0] + j)));
    acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(qj, codes16(rows[1] + j)));
    acc2 = _mm512_add_ps(acc2, _mm512_mul_ps(qj, codes16(rows[2] + j)));
    acc3 = _mm512_add_ps(acc3, _mm512_mul_ps(qj, codes16(rows[3] + j)));
  }
  const __m512 acc[4] = {acc0, acc1, acc2, acc3};
  for (int r = 0; r < 4; ++r) {
    alignas(64) float s[16];
    _mm512_store_ps(s, acc[r]);
    out[r] = finish(s, q, rows[r], j, dim);
  }
}

#else  // no x86: the portable loop always

Q8Simd q8_simd_level() { return Q8Simd::kPortable; }
float dot_q8_avx2(const float*, const int8_t*, int64_t) { __builtin_trap(); }
float dot_q8_avx512(const float*, const int8_t*, int64_t) { __builtin_trap(); }
void dot_q8_x4_avx2(const float*, const int8_t* const*, int64_t, float*) { __builtin_trap(); }
void dot_q8_x4_avx512(const float*, const int8_t* const*, int64_t, float*) { __builtin_trap(); }

#endif

}  // namespace ra::retriever
