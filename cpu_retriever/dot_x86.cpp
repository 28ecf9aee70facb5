#include "cpu_retriever/dot_x86.h"

#include <cstdlib>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define RA_X86_SIMD 1
#define RA_SIMD_TARGET __attribute__((target("avx2,f16c")))
#endif

namespace ra::retriever {

#ifdef RA_X86_SIMD

namespace {

// The row loaders: eight elements widened to float32 lanes, and the scalar widening of the tail.
struct LoadF32 {
  using T = float;
  RA_SIMD_TARGET static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float widen(float x) { return x; }
};
struct LoadBf16 {  // bf16 is the high half of a float32: widening is a 16-bit shift
  using T = uint16_t;
  RA_SIMD_TARGET static __m256 load8(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float widen(uint16_t bits) { return __builtin_bit_cast(float, static_cast<uint32_t>(bits) << 16); }
};
struct LoadF16 {
  using T = uint16_t;
  RA_SIMD_TARGET static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // The tail through the same instruction (the portable widening gives the same bits).
  RA_SIMD_TARGET static float widen(uint16_t bits) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
  }
};

struct LoadI8 {  // navigation rows (navigation_keys.h): int8 codes, sign-extended and converted exactly
  using T = int8_t;
  RA_SIMD_TARGET static __m256 load8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static float widen(int8_t x) { return static_cast<float>(x); }
};

// The portable loop's eight partial sums s[0..7] are the eight lanes of acc; the tail (dim % 8
// elements) goes to lanes 0.. as there, and the lanes are summed in its order.
template <typename A, typename B>
RA_SIMD_TARGET inline float dot8(const typename A::T* a, const typename B::T* b, int64_t dim) {
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(A::load8(a + j), B::load8(b + j)));
  alignas(32) float s[8];
  _mm256_store_ps(s, acc);
  for (int64_t r = 0; j + r < dim; ++r) s[r] += A::widen(a[j + r]) * B::widen(b[j + r]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Four rows against one float32 query: four independent accumulators, so the adds of one row do not
// wait on each other's latency as a single row's chain does. Each row's lanes, tail and final order are
// exactly dot8's, so out[r] is bitwise dot8(a, b[r]).
template <typename B>
RA_SIMD_TARGET inline void dot8_x4(const float* a, const typename B::T* const* b, int64_t dim, float* out) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    const __m256 qa = _mm256_loadu_ps(a + j);
    acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(qa, B::load8(b[0] + j)));
    acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(qa, B::load8(b[1] + j)));
    acc2 = _mm256_add_ps(acc2, _mm256_mul_ps(qa, B::load8(b[2] + j)));
    acc3 = _mm256_add_ps(acc3, _mm256_mul_ps(qa, B::load8(b[3] + j)));
  }
  const __m256 acc[4] = {acc0, acc1, acc2, acc3};
  for (int r = 0; r < 4; ++r) {
    alignas(32) float s[8];
    _mm256_store_ps(s, acc[r]);
    for (int64_t t = 0; j + t < dim; ++t) s[t] += a[j + t] * B::widen(b[r][j + t]);
    out[r] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  }
}

// One stored row against four float32 rows: b is loaded and widened once per eight elements. Each
// lane's product a[r][j] * b[j] is the product dot8_x4 forms for query b widened and row a[r] (float
// multiplication commutes), in the same lanes, tail and final order: out[r] is bitwise dot8(a[r], b).
template <typename B>
RA_SIMD_TARGET inline void dot8_widened_x4(const typename B::T* b, const float* const* a, int64_t dim, float* out) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    const __m256 wb = B::load8(b + j);
    acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(_mm256_loadu_ps(a[0] + j), wb));
    acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(_mm256_loadu_ps(a[1] + j), wb));
    acc2 = _mm256_add_ps(acc2, _mm256_mul_ps(_mm256_loadu_ps(a[2] + j), wb));
    acc3 = _mm256_add_ps(acc3, _mm256_mul_ps(_mm256_loadu_ps(a[3] + j), wb));
  }
  const __m256 acc[4] = {acc0, acc1, acc2, acc3};
  for (int r = 0; r < 4; ++r) {
    alignas(32) float s[8];
    _mm256_store_ps(s, acc[r]);
    for (int64_t t = 0; j + t < dim; ++t) s[t] += a[r][j + t] * B::widen(b[j + t]);
    out[r] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  }
}

}  // namespace

bool cpu_has_simd_dot() {
  static const bool has = [] {
    const char* off = std::getenv("RA_SIMD_DOT");
    if (off != nullptr && std::string_view(off) == "0") return false;
    __builtin_cpu_init();
    // F16C from CPUID leaf 1 (clang before 15 has no "f16c" for __builtin_cpu_supports); AVX2 being
    // usable already means the OS saves the YMM state both need.
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && f16c;
  }();
  return has;
}

RA_SIMD_TARGET float dot_row_f32_avx2(const float* a, const float* b, int64_t dim) {
  return dot8<LoadF32, LoadF32>(a, b, dim);
}
RA_SIMD_TARGET float dot_row_bf16_avx2(const float* a, const uint16_t* b, int64_t dim) {
  return dot8<LoadF32, LoadBf16>(a, b, dim);
}
RA_SIMD_TARGET float dot_rows_bf16_avx2(const uint16_t* a, const uint16_t* b, int64_t dim) {
  return dot8<LoadBf16, LoadBf16>(a, b, dim);
}
RA_SIMD_TARGET float dot_row_f16_avx2(const float* a, const uint16_t* b, int64_t dim) {
  return dot8<LoadF32, LoadF16>(a, b, dim);
}
RA_SIMD_TARGET float dot_rows_f16_avx2(const uint16_t* a, const uint16_t* b, int64_t dim) {
  return dot8<LoadF16, LoadF16>(a, b, dim);
}

RA_SIMD_TARGET void dot_row_x4_f32_avx2(const float* a, const float* const* b, int64_t dim, float* out) {
  dot8_x4<LoadF32>(a, b, dim, out);
}
RA_SIMD_TARGET void dot_row_x4_bf16_avx2(const float* a, const uint16_t* const* b, int64_t dim, float* out) {
  dot8_x4<LoadBf16>(a, b, dim, out);
}
RA_SIMD_TARGET void dot_row_x4_f16_avx2(const float* a, const uint16_t* const* b, int64_t dim, float* out) {
  dot8_x4<LoadF16>(a, b, dim, out);
}
RA_SIMD_TARGET void dot_widened_x4_bf16_avx2(const uint16_t* b, const float* const* a, int64_t dim, float* out) {
  dot8_widened_x4<LoadBf16>(b, a, dim, out);
}
RA_SIMD_TARGET void dot_widened_x4_f16_avx2(const uint16_t* b, const float* const* a, int64_t dim, float* out) {
  dot8_widened_x4<LoadF16>(b, a, dim, out);
}
RA_SIMD_TARGET float dot_row_i8_avx2(const float* a, const int8_t* b, int64_t dim) {
  return dot8<LoadF32, LoadI8>(a, b, dim);
}
RA_SIMD_TARGET void dot_row_x4_i8_avx2(const float* a, const int8_t* const* b, int64_t dim, float* out) {
  dot8_x4<LoadI8>(a, b, dim, out);
}

#else  // no x86: the portable loops always

bool cpu_has_simd_dot() { return false; }
float dot_row_f32_avx2(const float*, const float*, int64_t) { __builtin_trap(); }
float dot_row_bf16_avx2(const float*, const uint16_t*, int64_t) { __builtin_trap(); }
float dot_rows_bf16_avx2(const uint16_t*, const uint16_t*, int64_t) { __builtin_trap(); }
float dot_row_f16_avx2(const float*, const uint16_t*, int64_t) { __builtin_trap(); }
float dot_rows_f16_avx2(const uint16_t*, const uint16_t*, int64_t) { __builtin_trap(); }
void dot_row_x4_f32_avx2(const float*, const float* const*, int64_t, float*) { __builtin_trap(); }
void dot_row_x4_bf16_avx2(const float*, const uint16_t* const*, int64_t, float*) { __builtin_trap(); }
void dot_row_x4_f16_avx2(const float*, const uint16_t* const*, int64_t, float*) { __builtin_trap(); }
void dot_widened_x4_bf16_avx2(const uint16_t*, const float* const*, int64_t, float*) { __builtin_trap(); }
void dot_widened_x4_f16_avx2(const uint16_t*, const float* const*, int64_t, float*) { __builtin_trap(); }
float dot_row_i8_avx2(const float*, const int8_t*, int64_t) { __builtin_trap(); }
void dot_row_x4_i8_avx2(const float*, const int8_t* const*, int64_t, float*) { __builtin_trap(); }

#endif

}  // namespace ra::retriever
