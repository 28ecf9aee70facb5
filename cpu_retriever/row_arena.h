#pragma once
// Append-only float32 rows at addresses that never move: keys that arrive after an index's build.
//
// The arena reserves address space for max_rows rows up front (PROT_NONE: no memory and no commit
// charge) and makes pages readable and writable as rows arrive, so data() stays valid for the arena's
// life and a row, once appended, is never copied again. That is what lets the query heads of a kv
// group share one copy of their evicted keys (HeadShard), and a graph merge read them in place while
// new rows are appended.
//
// One writer appends; readers may read rows [0, size()) concurrently with an append (size() is
// published with release order after the row is written). Rows: [size()][dim] float32 at data().

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ra::retriever {

class RowArena {
 public:
  // dim > 0; max_rows > 0: the most rows this arena will ever hold (address space only).
  RowArena(int64_t dim, int64_t max_rows);
  ~RowArena();
  RowArena(const RowArena&) = delete;
  RowArena& operator=(const RowArena&) = delete;

  // Copies row: [dim] float32 in as row size() and returns its index. Throws ra::Error when the arena
  // is full (naming max_rows) or the system refuses the memory.
  int64_t append(const float* row);

  int64_t size() const { return size_.load(std::memory_order_acquire); }
  int64_t dim() const { return dim_; }
  int64_t max_rows() const { return max_rows_; }
  const float* data() const { return base_; }
  const float* row(int64_t i) const { return base_ + i * dim_; }
  size_t bytes() const { return committed_.load(std::memory_order_relaxed); }  // memory made usable so far

 private:
  int64_t dim_;
  int64_t max_rows_;
  float* base_ = nullptr;
  size_t reserved_ = 0;   // bytes of address space
  std::atomic<size_t> committed_{0};  // bytes made readable and writable, in whole commit steps
  std::atomic<int64_t> size_{0};
};

}  // namespace ra::retriever
