#pragma once
// What a retriever keeps of one layer's recent decode steps, by sequence position: its query heads'
// queries (QueryRing) and their answers (AnswerRing). A token leaves the GPU window W steps after it
// was decoded; the retriever then hands its own queries and their answers to the graph with its key
// (GraphIndex::append), so the merge can link it by attention and not only by key geometry, without
// searching again for what the decode step already found. A ring of W + 1 positions suffices: the
// eviction at step p is of position p − W, the oldest position held.

#include <algorithm>
#include <cstdint>
#include <vector>

namespace ra::retriever {

template <typename T>
class PositionRing {
 public:
  PositionRing() = default;
  // capacity: positions held (W + 1); row_size: elements stored per position.
  PositionRing(int64_t capacity, int64_t row_size)
      : capacity_(capacity),
        row_size_(row_size),
        tags_(static_cast<size_t>(capacity), -1),
        rows_(static_cast<size_t>(capacity * row_size)) {}

  bool empty() const { return capacity_ == 0; }
  int64_t row_size() const { return row_size_; }

  // The row of `position`, to be filled by the caller: [row_size]. Replaces what the slot held.
  T* put(int64_t position) {
    const int64_t slot = position % capacity_;
    tags_[static_cast<size_t>(slot)] = position;
    return rows_.data() + slot * row_size_;
  }

  // The row stored for `position`, or nullptr when it was never stored or has been overwritten.
  const T* find(int64_t position) const {
    if (capacity_ == 0 || position < 0) return nullptr;
    const int64_t slot = position % capacity_;
    return tags_[static_cast<size_t>(slot)] == position ? rows_.data() + slot * row_size_ : nullptr;
  }

 private:
  int64_t capacity_ = 0;
  int64_t row_size_ = 0;
  std::vector<int64_t> tags_;  // [capacity] position held by each slot, -1 = none
  std::vector<T> rows_;        // [capacity][row_size]
};

using QueryRing = PositionRing<float>;     // [owned query heads][head_dim] float32 per position
using AnswerRing = PositionRing<int32_t>;  // [owned query heads][answer width] row ids, -1 padded

}  // namespace ra::retriever
