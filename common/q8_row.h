#pragma once
// int8 KV rows (issue 22 item 1): a million tokens of bf16 K and V do not fit a retriever host's RAM, so
// keys and values may be stored as int8 codes with one float32 scale per row (per token, per kv head).
// The rule is shared: the retrievers store such rows (cpu_retriever/kv_int8.h), the worker codes them
// for the wire (common/wire_rows.h), and the CUDA backend codes them on the GPU during the prefill
// (gpu_worker/backend/cuda/qkv_gather.h), all bit for bit alike.
//
// Row layout: [dim] int8 codes, then the float32 scale in host byte order at byte offset dim (not
// necessarily 4-aligned: read with memcpy). A row is dim + 4 bytes; rows follow each other without
// padding, so row i of a block starts at byte i * (dim + 4).
//
// The rule (symmetric, per row), for a row x of dim finite float32 values:
//   scale = max_j |x_j| / 127                  (float32 division)
//   q_j   = clamp(round_half_even(x_j / scale), -127, 127)   (float32 division; -128 is never used)
//   x̂_j   = scale · q_j                         (float32 product: the dequantised value)
// so |x_j − x̂_j| ≤ scale / 2, up to the float32 roundings of x_j / scale and scale · q_j (together at
// most 254 · 2⁻²⁴ · scale: the test allows scale · (0.5 + 2⁻¹⁵)). A row whose elements are k_j · scale
// with 127 · scale exact in float32 (e.g. a power-of-two scale) round-trips bit for bit. A row of zeros
// (or one so small that max |x| / 127 underflows to zero) has scale 0 and codes 0. A row holding inf or
// NaN cannot be coded: quantise_q8_row reports the element and the store refuses the row (ra::Error
// naming it), since one such value would otherwise turn its whole row's scale into inf or NaN.
// Both divisions are IEEE float32 (no -ffast-math anywhere in the project), which is what lets the GPU
// reproduce the codes exactly.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ra {

// Bytes a row carries after its codes: the float32 scale.
inline constexpr size_t kQ8ScaleBytes = sizeof(float);

// The scale of a row: codes: [dim] int8, followed by the scale.
inline float q8_row_scale(const int8_t* codes, int64_t dim) {
  float scale;
  std::memcpy(&scale, codes + dim, sizeof scale);
  return scale;
}

// Codes x: [dim] float32 into row: [dim] int8 codes then the float32 scale (the rule above). Returns -1,
// or the index of the first element that is not finite (then row is left unspecified).
inline int64_t quantise_q8_row(const float* x, int64_t dim, int8_t* row) {
  float peak = 0.0f;
  for (int64_t j = 0; j < dim; ++j) {
    if (!std::isfinite(x[j])) return j;
    peak = std::max(peak, std::fabs(x[j]));
  }
  const float scale = peak / 127.0f;
  for (int64_t j = 0; j < dim; ++j) {
    // nearbyint rounds half to even in the default rounding mode; the clamp only catches x / scale
    // rounding a hair past 127 for the peak element.
    const float c = scale > 0.0f ? std::nearbyint(x[j] / scale) : 0.0f;
    row[j] = static_cast<int8_t>(std::clamp(c, -127.0f, 127.0f));
  }
  std::memcpy(row + dim, &scale, sizeof scale);
  return -1;
}

// The dequantised row: out[j] = scale · code_j, out: [dim] float32.
inline void dequantise_q8_row(const int8_t* row, int64_t dim, float* out) {
  const float scale = q8_row_scale(row, dim);
  for (int64_t j = 0; j < dim; ++j) out[j] = scale * static_cast<float>(row[j]);
}

}  // namespace ra
