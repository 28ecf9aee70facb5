#pragma once
// Inner products with the CPU's 256-bit vector unit, for dot.h. The project is built for baseline
// x86-64 (SSE2), so these are compiled for AVX2 and F16C separately and chosen at run time.
//
// Each computes exactly what the portable loop of dot.h does: the same eight lanes (one 256-bit
// register), a multiply, then an add (no fused multiply-add: the target attributes leave FMA off, so the
// compiler cannot contract them), the tail in lanes 0.., and the same final summation order. Results
// are therefore bitwise those of dot_row_portable; only the width of the work and, for 16-bit rows, the
// widening are done by hardware. On baseline builds the portable bf16 widening made flat scans 1.75-1.83x
// slower than float32 on the GPU machine's Xeon (docs/retrieval.md).

#include <cstdint>

namespace ra::retriever {

// Whether this CPU has AVX2 and F16C (checked once); call the functions below only where it does.
// RA_SIMD_DOT=0 in the environment makes it false, so one binary can measure both paths.
bool cpu_has_simd_dot();

// a: [dim] float32 query; b: [dim] row.
float dot_row_f32_avx2(const float* a, const float* b, int64_t dim);
float dot_row_bf16_avx2(const float* a, const uint16_t* b, int64_t dim);
float dot_row_f16_avx2(const float* a, const uint16_t* b, int64_t dim);

// a, b: [dim] rows of one 16-bit type (two stored keys).
float dot_rows_bf16_avx2(const uint16_t* a, const uint16_t* b, int64_t dim);
float dot_rows_f16_avx2(const uint16_t* a, const uint16_t* b, int64_t dim);

// a: [dim] float32 query; b: 4 rows of [dim]; out: [4], out[r] bitwise dot_row_*(a, b[r], dim). Four
// independent chains of adds: a flat scan or a graph hop scoring several keys is bound by the add
// latency of one row's chain, not by the loads.
void dot_row_x4_f32_avx2(const float* a, const float* const* b, int64_t dim, float* out);
void dot_row_x4_bf16_avx2(const float* a, const uint16_t* const* b, int64_t dim, float* out);
void dot_row_x4_f16_avx2(const float* a, const uint16_t* const* b, int64_t dim, float* out);
// One stored row b against four float32 rows a[0..3]: out[r] = dot_row_*_avx2(a[r], b), bitwise.
void dot_widened_x4_bf16_avx2(const uint16_t* b, const float* const* a, int64_t dim, float* out);
void dot_widened_x4_f16_avx2(const uint16_t* b, const float* const* a, int64_t dim, float* out);

// The same over int8 navigation rows (navigation_keys.h): a query pre-scaled per channel · int8 codes.
float dot_row_i8_avx2(const float* a, const int8_t* b, int64_t dim);
void dot_row_x4_i8_avx2(const float* a, const int8_t* const* b, int64_t dim, float* out);

}  // namespace ra::retriever
