#pragma once
// Inner products over f16 rows with the CPU's half-to-float instruction (F16C), for dot.h. Same lanes,
// same operations (a multiply, then an add: no fused multiply-add), same final summation order as the
// portable loop, so the results are bitwise those of dot_row_portable<F16Elem>; only the widening is
// done by hardware (on this project's baseline x86-64 build, the portable f16 widening made scoring
// 1.2-1.4x slower than bf16's, docs/retrieval.md).

#include <cstdint>

namespace ra::retriever {

// Whether this CPU has AVX and F16C (checked once).
bool cpu_has_f16c();

// a: [dim] float32, b: [dim] f16 bits. Call only when cpu_has_f16c().
float dot_row_f16c(const float* a, const uint16_t* b, int64_t dim);
// a, b: [dim] f16 bits. Call only when cpu_has_f16c().
float dot_rows_f16c(const uint16_t* a, const uint16_t* b, int64_t dim);

}  // namespace ra::retriever
