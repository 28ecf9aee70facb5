#include "cpu_retriever/row_arena.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/error.h"

namespace ra::retriever {
RowArena::RowArena(KvDtype dtype, int64_t dim, int64_t max_rows)
    : dtype_(dtype), dim_(dim), max_rows_(max_rows), row_bytes_(kv_row_bytes(dtype, dim)) {
  RA_REQUIRE(dim > 0 && max_rows > 0, "row arena: dim ({}) and max_rows ({}) must be positive", dim, max_rows);
  RA_REQUIRE(max_rows <= std::numeric_limits<int64_t>::max() / 4 / dim,
             "row arena: {} rows of {} elements overflow the address space", max_rows, dim);
  space_ = AddressReservation(static_cast<size_t>(max_rows) * row_bytes_, /*usable=*/false, "row arena");
  base_ = space_.data();
}

RowArena::~RowArena() = default;

const float* RowArena::row(int64_t i) const {
  RA_ASSERT_MSG(dtype_ == KvDtype::kF32, "row arena: float32 row {} of a {} arena", i, kv_dtype_name(dtype_));
  return reinterpret_cast<const float*>(row_data(i));
}

void RowArena::commit(size_t end, int64_t first_row) {
  const size_t committed = committed_.load(std::memory_order_relaxed);
  if (end <= committed) return;
  // Whole steps (256 KiB, or 2 MiB pages in a huge arena): one mprotect per few hundred rows.
  try {
    committed_.store(space_.grow(committed, end), std::memory_order_relaxed);
  } catch (const Error& e) {
    throw Error(fmt::format("row arena: at row {}: {}", first_row, e.what()));
  }
}

std::vector<float> RowArena::widened(int64_t n) const {
  RA_REQUIRE(n >= 0 && n <= size(), "row arena: {} rows to widen of {}", n, size());
  std::vector<float> out(static_cast<size_t>(n * dim_));
  widen_rows(dtype_, base_, n, dim_, out.data());
  return out;
}

int64_t RowArena::append(const float* row) { return append(row, 1); }

int64_t RowArena::make_room(int64_t n) {
  const int64_t first = size_.load(std::memory_order_relaxed);
  RA_REQUIRE(n >= 0, "row arena: negative row count {}", n);
  RA_REQUIRE(n <= max_rows_ - first, "row arena: full at {} rows (its max_rows); {} more asked", max_rows_, n);
  commit(static_cast<size_t>(first + n) * row_bytes_, first);
  return first;
}

int64_t RowArena::append_raw(const void* rows, int64_t n) {
  const int64_t first = make_room(n);
  if (n > 0) std::memcpy(base_ + static_cast<size_t>(first) * row_bytes_, rows, static_cast<size_t>(n) * row_bytes_);
  size_.store(first + n, std::memory_order_release);
  return first;
}

int64_t RowArena::append(const float* rows, int64_t n) {
  check_codable(rows, n, "row");
  const int64_t first = make_room(n);
  with_row_elem(dtype_, [&](auto e) {
    using E = decltype(e);
    std::byte* out = base_ + static_cast<size_t>(first) * row_bytes_;
    for (int64_t r = 0; r < n; ++r) {
      const int64_t bad = narrow_row<E>(rows + r * dim_, dim_, reinterpret_cast<typename E::T*>(out + r * row_bytes_));
      RA_ASSERT(bad < 0);  // check_codable refused it
    }
  });
  size_.store(first + n, std::memory_order_release);
  return first;
}

void RowArena::check_codable(const float* rows, int64_t n, const char* what) const {
  if (dtype_ != KvDtype::kQ8) return;  // the 16/32-bit roundings take inf and NaN as they are
  const int64_t first = size();
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < dim_; ++j) {
      const float x = rows[r * dim_ + j];
      RA_REQUIRE(std::isfinite(x),
                 "{} row {}: element {} is {}; an int8 row takes finite values only (its scale is max |x| / 127)",
                 what, first + r, j, x);
    }
  }
}

}  // namespace ra::retriever
