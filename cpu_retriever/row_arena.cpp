#include "cpu_retriever/row_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "common/error.h"

namespace ra::retriever {
namespace {

// Memory is made usable 256 KiB at a time: one mprotect per 512 rows of 128 floats.
constexpr size_t kCommitStep = size_t{256} << 10;

size_t round_up(size_t bytes, size_t step) { return (bytes + step - 1) / step * step; }

}  // namespace

RowArena::RowArena(int64_t dim, int64_t max_rows) : dim_(dim), max_rows_(max_rows) {
  RA_REQUIRE(dim > 0 && max_rows > 0, "row arena: dim ({}) and max_rows ({}) must be positive", dim, max_rows);
  RA_REQUIRE(max_rows <= std::numeric_limits<int64_t>::max() / 4 / dim,
             "row arena: {} rows of {} floats overflow the address space", max_rows, dim);
  reserved_ = round_up(static_cast<size_t>(max_rows * dim) * sizeof(float), kCommitStep);
  void* p = mmap(nullptr, reserved_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  RA_REQUIRE(p != MAP_FAILED, "row arena: cannot reserve {} bytes of address space for {} rows: {}", reserved_,
             max_rows, std::strerror(errno));
  base_ = static_cast<float*>(p);
}

RowArena::~RowArena() {
  if (base_ != nullptr) munmap(base_, reserved_);
}

int64_t RowArena::append(const float* row) {
  const int64_t i = size_.load(std::memory_order_relaxed);
  RA_REQUIRE(i < max_rows_, "row arena: full at {} rows (its max_rows)", max_rows_);
  const size_t end = static_cast<size_t>((i + 1) * dim_) * sizeof(float);
  const size_t committed = committed_.load(std::memory_order_relaxed);
  if (end > committed) {
    const size_t grow = std::min(reserved_, round_up(end, kCommitStep)) - committed;
    RA_REQUIRE(mprotect(reinterpret_cast<char*>(base_) + committed, grow, PROT_READ | PROT_WRITE) == 0,
               "row arena: cannot commit {} more bytes at row {}: {}", grow, i, std::strerror(errno));
    committed_.store(committed + grow, std::memory_order_relaxed);
  }
  std::memcpy(base_ + i * dim_, row, static_cast<size_t>(dim_) * sizeof(float));
  size_.store(i + 1, std::memory_order_release);
  return i;
}

}  // namespace ra::retriever
