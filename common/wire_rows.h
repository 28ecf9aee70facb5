#pragma once
// The forms in which key and value rows travel from the worker to the retrievers (kBuild,
// transport/messages.h) and lie in a saved context's layer files (gpu_worker/serve/context_files.h):
// float32, bf16 bits, or int8 codes with a float32 scale (common/q8_row.h). The launcher picks one per
// side, from the retrievers' store dtypes (launcher/ranks/retriever_setup.h: kv_wire_format), so that
// each row is coded once, on the worker (or on the GPU), and the wire carries no more bytes than the
// store keeps: bf16 halves float32, int8 about quarters it.
//
// A row of dim elements is wire_row_bytes(rows, dim) bytes: f32 4 dim, bf16 2 dim (host byte order),
// int8 dim + 4 (codes, then the scale). Rows follow each other without padding; a block of rows that
// other arrays follow is padded to 4 bytes (wire_block_bytes), so those stay 4-byte aligned.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "common/half.h"
#include "common/q8_row.h"

namespace ra {

enum class WireRows : uint16_t { kF32 = 0, kBF16 = 1, kQ8 = 2 };

// Whether a value read from a message or a file is one of the WireRows.
constexpr bool is_wire_rows(uint16_t v) { return v <= static_cast<uint16_t>(WireRows::kQ8); }

constexpr std::string_view wire_rows_name(WireRows rows) {
  switch (rows) {
    case WireRows::kF32: return "f32";
    case WireRows::kBF16: return "bf16";
    case WireRows::kQ8: return "int8";
  }
  return "?";
}

// Bytes of one row of dim elements.
constexpr size_t wire_row_bytes(WireRows rows, int64_t dim) {
  const auto d = static_cast<size_t>(dim);
  return rows == WireRows::kF32 ? 4 * d : rows == WireRows::kBF16 ? 2 * d : d + kQ8ScaleBytes;
}
// Bytes of a block of n such rows, padded to a multiple of 4.
constexpr size_t wire_block_bytes(WireRows rows, int64_t n, int64_t dim) {
  return (static_cast<size_t>(n) * wire_row_bytes(rows, dim) + 3) & ~size_t{3};
}

// The forms of keys and of values.
struct KvWireFormat {
  WireRows key = WireRows::kF32;
  WireRows value = WireRows::kF32;
  bool operator==(const KvWireFormat&) const = default;
};

// Codes n rows x: [n][dim] float32 into out: [n] rows of wire_row_bytes(rows, dim) bytes (any alignment):
// f32 copied, bf16 rounded to nearest even (common/half.h to_bf16), int8 by quantise_q8_row (exactly the
// values given: a bf16 model's rows are bf16-exact already). Returns -1, or the first row int8 cannot
// code (an element not finite), after which out is unspecified.
inline int64_t encode_wire_rows(WireRows rows, const float* x, int64_t n, int64_t dim, std::byte* out) {
  const size_t rb = wire_row_bytes(rows, dim);
  switch (rows) {
    case WireRows::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * rb);
      return -1;
    case WireRows::kBF16:
      for (int64_t e = 0; e < n * dim; ++e) {
        const uint16_t bits = to_bf16(x[e]).bits;
        std::memcpy(out + 2 * e, &bits, sizeof bits);
      }
      return -1;
    case WireRows::kQ8:
      for (int64_t i = 0; i < n; ++i) {
        if (quantise_q8_row(x + i * dim, dim, reinterpret_cast<int8_t*>(out + static_cast<size_t>(i) * rb)) >= 0) {
          return i;
        }
      }
      return -1;
  }
  return -1;
}

// The rows back as float32: in: [n] rows of wire_row_bytes(rows, dim) bytes, out: [n][dim]. Exact for f32
// and bf16; int8 rows dequantised (scale · code).
inline void decode_wire_rows(WireRows rows, const std::byte* in, int64_t n, int64_t dim, float* out) {
  const size_t rb = wire_row_bytes(rows, dim);
  switch (rows) {
    case WireRows::kF32:
      std::memcpy(out, in, static_cast<size_t>(n) * rb);
      return;
    case WireRows::kBF16:
      for (int64_t e = 0; e < n * dim; ++e) {
        uint16_t bits;
        std::memcpy(&bits, in + 2 * e, sizeof bits);
        out[e] = to_float(bf16{bits});
      }
      return;
    case WireRows::kQ8:
      for (int64_t i = 0; i < n; ++i) {
        dequantise_q8_row(reinterpret_cast<const int8_t*>(in + static_cast<size_t>(i) * rb), dim, out + i * dim);
      }
      return;
  }
}

// Rows of form `from` in form `to`: decoded (exactly for f32 and bf16), then encoded, a block of rows at a
// time. in, out: [n] rows of dim elements. Returns -1, or the first row `to` cannot code (see encode).
inline int64_t transcode_wire_rows(WireRows from, const std::byte* in, WireRows to, int64_t n, int64_t dim,
                                   std::byte* out) {
  constexpr int64_t kBlock = 256;
  std::vector<float> x(static_cast<size_t>(std::min(n, kBlock) * dim));
  for (int64_t first = 0; first < n; first += kBlock) {
    const int64_t m = std::min(kBlock, n - first);
    decode_wire_rows(from, in + static_cast<size_t>(first) * wire_row_bytes(from, dim), m, dim, x.data());
    const int64_t bad = encode_wire_rows(to, x.data(), m, dim, out + static_cast<size_t>(first) * wire_row_bytes(to, dim));
    if (bad >= 0) return first + bad;
  }
  return -1;
}

}  // namespace ra
