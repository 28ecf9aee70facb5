#pragma once
// An 8-bit copy of a graph's keys for the decode search to walk (issue 16).
//
// A decode search is bound by the cache lines it loads, not by arithmetic: at 128K keys it expands ~200
// nodes and scores ~1,200 random rows per query head, each a dependent DRAM load (docs/perf.md, sixth
// round). A bf16 row of 128 dims is four lines; its int8 code is two. The graph is walked on the codes,
// and the top-k it returns are then attended with the exact keys (KvStore::attend rescored them anyway),
// so only which keys are chosen can change, never the weights given to them.
//
// Quantisation is per channel, not per row: code[d] = round(key[d] / scale[d]) in [-127, 127]. A query
// is scaled once per search, q'[d] = q[d] * scale[d], so q' · code approximates q · key with no per-row
// scale to load, and per-channel scales follow the outlier channels of real keys. The keys are post-RoPE
// in the rotate-half layout (gpu_worker/model/rope.h): channels d and d + dim/2 are a pair that the
// position rotates, so both take scale = max over the build's keys of the pair's norm / 127 (finite
// values only). A rotation never takes a key past its pair's norm, so keys appended later at new
// positions stay in range unless their content does not; beyond it they saturate. (Odd dim: each
// channel's own max |key[d]|.)
//
// Threads: one writer appends (GraphIndex, under its exclusive lock); readers read rows [0, size())
// under the shared lock.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/address_reservation.h"
#include "cpu_retriever/graph_search.h"

namespace ra::retriever {

class NavigationKeys {
 public:
  // exact: the keys, ids [0, n) coded now (their scales set the code's); max_rows >= n: the most ids
  // the copy will ever hold (address space only). threads: the build's team (output does not depend on it).
  NavigationKeys(const KeyRows& exact, int64_t n, int64_t max_rows, int threads = 1);
  // A saved copy: scales [dim] (finite, > 0) and codes [n][dim], as scales() and codes() gave them.
  // Throws ra::Error on sizes or scales that no build makes.
  NavigationKeys(std::span<const float> scales, std::span<const int8_t> codes, int64_t max_rows);

  // Codes exact key `id` as row size(); id must equal size(). Throws ra::Error past max_rows.
  void append(const KeyRows& exact, uint32_t id);

  int64_t size() const { return size_; }
  int64_t dim() const { return dim_; }
  // The codes as KeyRows of dtype kI8 (every id in one run), for the graph search.
  KeyRows rows() const { return KeyRows{base_, max_rows_, nullptr, dim_, KvDtype::kI8}; }
  // out[d] = q[d] * scale[d]: the query whose dot with a row's code approximates its dot with the key.
  void scale_query(const float* q, float* out) const;
  const float* scales() const { return scale_.data(); }
  std::span<const int8_t> codes() const { return {base_, static_cast<size_t>(size_ * dim_)}; }  // [size()][dim]
  size_t bytes() const { return committed_ + scale_.size() * 2 * sizeof(float); }

 private:
  void code(const float* key, int8_t* out) const;
  void reserve_space();  // the codes' address space, for max_rows_ rows

  int64_t dim_;
  int64_t max_rows_;
  std::vector<float> scale_;      // [dim]
  std::vector<float> inv_scale_;  // [dim]
  std::vector<float> widened_;    // one key as float32, the writer's
  AddressReservation space_;
  int8_t* base_ = nullptr;
  size_t committed_ = 0;
  int64_t size_ = 0;
};

}  // namespace ra::retriever
