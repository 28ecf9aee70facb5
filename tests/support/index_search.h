#pragma once
// One KeyIndex::search as a value, for tests that compare indexes: the answer's ids and scores (resized
// to what the index returned) and its counters.

#include <cstdint>
#include <vector>

#include "cpu_retriever/key_index.h"

namespace ra::test {

struct SearchResult {
  std::vector<int64_t> ids;
  std::vector<float> scores;
  retriever::SearchStats stats;
  int count = 0;
};

inline SearchResult search(const retriever::KeyIndex& index, const float* q, const retriever::SearchParams& p) {
  SearchResult r;
  r.ids.assign(static_cast<size_t>(p.k), -1);
  r.scores.assign(static_cast<size_t>(p.k), 0.0f);
  r.count = index.search(q, p, r.ids.data(), r.scores.data(), &r.stats);
  r.ids.resize(static_cast<size_t>(r.count));
  r.scores.resize(static_cast<size_t>(r.count));
  return r;
}

}  // namespace ra::test
