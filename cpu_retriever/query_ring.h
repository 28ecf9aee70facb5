#pragma once
// The recent queries of one layer's owned query heads, by sequence position. A token leaves the GPU
// window W steps after it was decoded; the retriever then hands its own queries to the graph with its
// key (GraphIndex::append), so the merge can link it by attention and not only by key geometry. A ring
// of W + 1 positions suffices: the eviction at step p is of position p − W, the oldest position held.

#include <algorithm>
#include <cstdint>
#include <vector>

namespace ra::retriever {

class QueryRing {
 public:
  QueryRing() = default;
  // capacity: positions held (W + 1); row_floats: floats stored per position.
  QueryRing(int64_t capacity, int64_t row_floats)
      : capacity_(capacity),
        row_floats_(row_floats),
        tags_(static_cast<size_t>(capacity), -1),
        rows_(static_cast<size_t>(capacity * row_floats)) {}

  bool empty() const { return capacity_ == 0; }

  // The row of `position`, to be filled by the caller: [row_floats] float32. Replaces what the slot held.
  float* put(int64_t position) {
    const int64_t slot = position % capacity_;
    tags_[static_cast<size_t>(slot)] = position;
    return rows_.data() + slot * row_floats_;
  }

  // The row stored for `position`, or nullptr when it was never stored or has been overwritten.
  const float* find(int64_t position) const {
    if (capacity_ == 0 || position < 0) return nullptr;
    const int64_t slot = position % capacity_;
    return tags_[static_cast<size_t>(slot)] == position ? rows_.data() + slot * row_floats_ : nullptr;
  }

 private:
  int64_t capacity_ = 0;
  int64_t row_floats_ = 0;
  std::vector<int64_t> tags_;  // [capacity] position held by each slot, -1 = none
  std::vector<float> rows_;    // [capacity][row_floats]
};

}  // namespace ra::retriever
