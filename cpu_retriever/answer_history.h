#pragma once
// The last few answers of one head's searches, offered as seeds to its next search
// (SearchParams::seeds). Consecutive decode queries of a head share much of their top-k: on the needle
// model, 27-74% of the exact top-100 per head (docs/retrieval.md), so the previous answers start the
// beam near the new one, and across the graph components a cold start must find by itself.
//
// Storage is one [depth][k] id array, padded with -1 (ignored by the graph), overwritten slot by slot:
// recording an answer allocates nothing once k is fixed.

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "cpu_retriever/key_index.h"

namespace ra::retriever {

class AnswerHistory {
 public:
  // depth: answers kept (0 = off: no seeds).
  explicit AnswerHistory(int depth = 0) : depth_(std::max(0, depth)) {}

  // Records the answer of the latest search (best first). A different k than before clears the history.
  void record(std::span<const int64_t> ids, int k) {
    if (depth_ == 0 || k <= 0) return;
    if (k != k_) {
      k_ = k;
      ids_.assign(static_cast<size_t>(depth_) * static_cast<size_t>(k), -1);
      next_ = 0;
    }
    const auto slot = ids_.begin() + static_cast<std::ptrdiff_t>(next_) * k_;
    const size_t n = std::min(ids.size(), static_cast<size_t>(k_));
    std::copy_n(ids.begin(), n, slot);
    std::fill(slot + static_cast<std::ptrdiff_t>(n), slot + k_, int64_t{-1});
    next_ = (next_ + 1) % depth_;
  }

  // Points params' seeds at the recorded answers (none before the first record or when off).
  void seed(SearchParams& params) const {
    params.seeds = ids_.empty() ? nullptr : ids_.data();
    params.n_seeds = static_cast<int>(ids_.size());
  }

  void clear() { std::fill(ids_.begin(), ids_.end(), int64_t{-1}); }
  int depth() const { return depth_; }

 private:
  int depth_;
  int k_ = 0;
  int next_ = 0;
  std::vector<int64_t> ids_;  // [depth][k_], -1 = empty
};

}  // namespace ra::retriever
