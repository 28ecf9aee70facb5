#pragma once
// Rows handed to a store (RowArena, KvStore, HeadShard) and the forms a store takes. The build's rows
// arrive in the form they travelled in (kBuild's WireRows: float32, bf16, or int8 rows coded on the
// worker), and the store takes them as they are, without a float32 copy of the layer: rows of its own
// dtype bit for bit, float32 rows rounded (or quantised) to it, and 16-bit rows widened exactly and then
// rounded or quantised, a row at a time (RowArena::append).
//
// Layout: [n] rows of dim elements of `dtype` back to back, kv_row_bytes(dtype, dim) bytes each (an int8
// row: dim codes, then its float32 scale; common/q8_row.h), at any alignment for int8 rows.

#include <cstddef>
#include <cstdint>

#include "common/wire_rows.h"
#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {

struct KvRows {
  KvDtype dtype = KvDtype::kF32;
  const void* data = nullptr;

  KvRows() = default;
  KvRows(const float* rows) : data(rows) {}  // NOLINT: float32 rows convert implicitly, as callers had them
  KvRows(KvDtype d, const void* rows) : dtype(d), data(rows) {}

  // Row i of rows of dim elements.
  const std::byte* row(int64_t i, int64_t dim) const {
    return static_cast<const std::byte*>(data) + static_cast<size_t>(i) * kv_row_bytes(dtype, dim);
  }
};

// The dtype of rows that travelled in form `rows`.
constexpr KvDtype kv_dtype_of(WireRows rows) {
  return rows == WireRows::kQ8 ? KvDtype::kQ8 : rows == WireRows::kBF16 ? KvDtype::kBF16 : KvDtype::kF32;
}

// Whether a store of dtype `store` takes rows that travelled in form `rows`: float32 into any store;
// bf16 into bf16 (exact) or int8 (what int8 is coded from), not into f16 or f32 stores, which would keep
// the wire's rounding as if it were the model's; int8 rows only into int8 stores (their rounding
// cannot be undone).
constexpr bool takes_wire_rows(KvDtype store, WireRows rows) {
  switch (rows) {
    case WireRows::kF32: return true;
    case WireRows::kBF16: return store == KvDtype::kBF16 || store == KvDtype::kQ8;
    case WireRows::kQ8: return store == KvDtype::kQ8;
  }
  return false;
}

}  // namespace ra::retriever
