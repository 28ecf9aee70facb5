#include "cpu_retriever/dot_f16c.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RA_F16C_TARGET __attribute__((target("avx,f16c")))
#endif

namespace ra::retriever {

#ifdef RA_F16C_TARGET

bool cpu_has_f16c() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  }();
  return has;
}

namespace {

// The portable loop's eight partial sums s[0..7] are the eight lanes of acc; the tail (dim % 8
// elements) goes to lanes 0.. as there, and the lanes are summed in its order.
RA_F16C_TARGET float reduce(__m256 acc, const float* tail_a, const float* tail_b, int64_t tail) {
  alignas(32) float s[8];
  _mm256_store_ps(s, acc);
  for (int64_t r = 0; r < tail; ++r) s[r] += tail_a[r] * tail_b[r];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

RA_F16C_TARGET inline __m256 widen8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Widens the last n < 8 elements of an f16 row: out [n].
RA_F16C_TARGET void widen_tail(const uint16_t* p, int64_t n, float* out) {
  alignas(16) uint16_t h[8] = {};
  for (int64_t r = 0; r < n; ++r) h[r] = p[r];
  alignas(32) float f[8];
  _mm256_store_ps(f, widen8(h));
  for (int64_t r = 0; r < n; ++r) out[r] = f[r];
}

}  // namespace

RA_F16C_TARGET float dot_row_f16c(const float* a, const uint16_t* b, int64_t dim) {
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(a + j), widen8(b + j)));
  float tb[8];
  widen_tail(b + j, dim - j, tb);
  return reduce(acc, a + j, tb, dim - j);
}

RA_F16C_TARGET float dot_rows_f16c(const uint16_t* a, const uint16_t* b, int64_t dim) {
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(widen8(a + j), widen8(b + j)));
  float ta[8], tb[8];
  widen_tail(a + j, dim - j, ta);
  widen_tail(b + j, dim - j, tb);
  return reduce(acc, ta, tb, dim - j);
}

#else  // no x86: the portable loops always

bool cpu_has_f16c() { return false; }
float dot_row_f16c(const float*, const uint16_t*, int64_t) { __builtin_trap(); }
float dot_rows_f16c(const uint16_t*, const uint16_t*, int64_t) { __builtin_trap(); }

#endif

}  // namespace ra::retriever
