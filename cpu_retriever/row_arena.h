#pragma once
// Append-only rows of one element type (kv_dtype.h) at addresses that never move: the keys of a KV
// store, and the keys an index takes after its build.
//
// The arena reserves address space for max_rows rows up front (PROT_NONE: no memory and no commit
// charge; a large arena aligned for huge pages, common/address_reservation.h) and makes pages readable
// and writable as rows arrive, so data() stays valid for the arena's
// life and a row, once appended, is never copied again. That is what lets the query heads of a kv
// group score the one 16-bit copy of their keys that attention reads (HeadShard), and a graph merge
// read rows in place while new rows are appended.
//
// One writer appends; readers may read rows [0, size()) concurrently with an append (size() is
// published with release order after the row is written). Rows: [size()] rows of row_bytes() bytes at
// data(): dim elements of dtype() (an int8 row: dim codes, then its float32 scale: kv_int8.h).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/address_reservation.h"
#include "cpu_retriever/kv_dtype.h"
#include "cpu_retriever/kv_rows.h"

namespace ra::retriever {

class RowArena {
 public:
  // dim > 0; max_rows > 0: the most rows this arena will ever hold (address space only).
  RowArena(KvDtype dtype, int64_t dim, int64_t max_rows);
  RowArena(int64_t dim, int64_t max_rows) : RowArena(KvDtype::kF32, dim, max_rows) {}  // float32 rows
  ~RowArena();
  RowArena(const RowArena&) = delete;
  RowArena& operator=(const RowArena&) = delete;

  // Appends row: [dim] float32 as row size(), rounded to dtype() (nearest even; int8: kv_int8.h's
  // rule), and returns its index. Throws ra::Error when the arena is full (naming max_rows), the system
  // refuses the memory, or an int8 arena is given a value that is not finite (naming the row).
  int64_t append(const float* row);
  // Appends n rows (kv_rows.h; float32 rows convert implicitly); all or none (capacity and values are
  // checked first). Returns the first. By the rows' dtype:
  //   dtype(): copied bit for bit (an int8 row's scale must be finite and >= 0);
  //   float32: rounded to dtype() (nearest even; int8: kv_int8.h's rule; inf and NaN refused by int8);
  //   bf16 or f16 into a float32 or int8 arena: widened (exactly), then as float32, a row at a time;
  //   any other pair (int8 rows into a 16/32-bit arena, bf16 into f16 and back): refused.
  int64_t append(KvRows rows, int64_t n);
  // Appends n rows already of dtype(): [n] rows of row_bytes(), copied bit for bit and unchecked (a saved
  // shard's rows, checked by its reader).
  int64_t append_raw(const void* rows, int64_t n);
  // Throws what append(rows, n) would for rows it cannot take (see append), naming the row it would have
  // been (`what`: "key", "value"; append's own: "arena").
  void check_codable(KvRows rows, int64_t n, const char* what) const;

  int64_t size() const { return size_.load(std::memory_order_acquire); }
  int64_t dim() const { return dim_; }
  int64_t max_rows() const { return max_rows_; }
  KvDtype dtype() const { return dtype_; }
  size_t row_bytes() const { return row_bytes_; }
  const void* data() const { return base_; }
  const void* row_data(int64_t i) const { return base_ + static_cast<size_t>(i) * row_bytes_; }
  // Row i of a float32 arena.
  const float* row(int64_t i) const;
  // Row i widened to float32 (an int8 row dequantised): out [dim].
  void widen(int64_t i, float* out) const { widen_row(dtype_, row_data(i), dim_, out); }
  // Rows [0, n) widened to float32, a temporary [n][dim] copy for code that needs float32 (BLAS, FAISS),
  // on `threads` OpenMP threads.
  std::vector<float> widened(int64_t n, int threads = 1) const;
  size_t bytes() const { return committed_.load(std::memory_order_relaxed); }  // memory made usable so far

 private:
  void commit(size_t end, int64_t first_row);  // makes bytes [0, end) usable
  int64_t make_room(int64_t n);  // checks and commits n more rows; returns the first's index

  KvDtype dtype_;
  int64_t dim_;
  int64_t max_rows_;
  size_t row_bytes_;
  AddressReservation space_;
  std::byte* base_ = nullptr;  // space_.data()
  std::atomic<size_t> committed_{0};  // bytes made readable and writable, in whole commit steps
  std::atomic<int64_t> size_{0};
};

}  // namespace ra::retriever
