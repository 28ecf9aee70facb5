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

std::vector<float> RowArena::widened(int64_t n, int threads) const {
  RA_REQUIRE(n >= 0 && n <= size(), "row arena: {} rows to widen of {}", n, size());
  std::vector<float> out(static_cast<size_t>(n * dim_));
  // Blocks of rows in parallel (the build's team; 1 elsewhere).
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(std::max(1, threads)) if (threads > 1 && blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kBlock, rows = std::min(kBlock, n - first);
    widen_rows(dtype_, base_ + static_cast<size_t>(first) * row_bytes_, rows, dim_,
               out.data() + static_cast<size_t>(first * dim_));
  }
  return out;
}

int64_t RowArena::append(const float* row) { return append(KvRows(row), 1); }

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

int64_t RowArena::append(KvRows rows, int64_t n) {
  check_codable(rows, n, "arena");
  if (rows.dtype == dtype_) return append_raw(rows.data, n);  // checked: an int8 row's scale too
  const int64_t first = make_room(n);
  with_row_elem(dtype_, [&](auto e) {
    using E = decltype(e);
    std::byte* out = base_ + static_cast<size_t>(first) * row_bytes_;
    // 16-bit rows are widened one at a time: the build's rows come without a float32 copy of the layer.
    std::vector<float> widened(rows.dtype == KvDtype::kF32 ? 0 : static_cast<size_t>(dim_));
    for (int64_t r = 0; r < n; ++r) {
      const float* x = widened.data();
      if (widened.empty()) {
        x = static_cast<const float*>(rows.data) + r * dim_;
      } else {
        widen_row(rows.dtype, rows.row(r, dim_), dim_, widened.data());
      }
      const int64_t bad = narrow_row<E>(x, dim_, reinterpret_cast<typename E::T*>(out + r * row_bytes_));
      RA_ASSERT(bad < 0);  // check_codable refused it
    }
  });
  size_.store(first + n, std::memory_order_release);
  return first;
}

void RowArena::check_codable(KvRows rows, int64_t n, const char* what) const {
  if (n <= 0) return;  // append refuses a negative count
  const int64_t first = size();
  const bool sixteen = rows.dtype == KvDtype::kBF16 || rows.dtype == KvDtype::kF16;
  const bool takes = rows.dtype != KvDtype::kI8 &&
                     (rows.dtype == dtype_ || rows.dtype == KvDtype::kF32 ||
                      (sixteen && (dtype_ == KvDtype::kF32 || dtype_ == KvDtype::kQ8)));
  RA_REQUIRE(takes,
             "{} rows {} to {}: {} rows cannot go into a {} store (int8 rows only into int8, 16-bit rows only "
             "into their own dtype, float32 or int8)",
             what, first, first + n - 1, kv_dtype_name(rows.dtype), kv_dtype_name(dtype_));
  if (dtype_ != KvDtype::kQ8) return;  // the 16/32-bit roundings take inf and NaN as they are
  if (rows.dtype == KvDtype::kQ8) {
    for (int64_t r = 0; r < n; ++r) {
      const float scale = q8_row_scale(reinterpret_cast<const int8_t*>(rows.row(r, dim_)), dim_);
      RA_REQUIRE(std::isfinite(scale) && scale >= 0.0f,
                 "{} row {}: its int8 scale is {}; the rule gives max |x| / 127, finite and >= 0", what, first + r,
                 scale);
    }
    return;
  }
  with_kv_elem(rows.dtype, [&](auto e) {
    using E = decltype(e);
    const auto* x = static_cast<const typename E::T*>(rows.data);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < dim_; ++j) {
        const float v = E::widen(x[r * dim_ + j]);
        RA_REQUIRE(std::isfinite(v),
                   "{} row {}: element {} is {}; an int8 row takes finite values only (its scale is max |x| / 127)",
                   what, first + r, j, v);
      }
    }
  });
}

}  // namespace ra::retriever
