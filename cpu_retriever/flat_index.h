#pragma once
// Exact inner-product top-k: the Flat baseline (DESIGN §5, mode `flat`) and the brute force used for
// ground truth and for the graph build's training lists (DESIGN §6 step 1).
//
// Layout (as in key_index.h): keys are n rows of dim float32, component j of key i is keys[i * dim + j];
// or n rows of a 16-bit dtype (kv_dtype.h), widened exactly as they are scored, or n int8 rows with
// their scales (kv_int8.h), scored by dot_q8.h as attention scores them.
// Ranking: higher score q · k first; equal scores are ordered by lower id, so results are
// deterministic. Scores are accumulated in float32 with 8 independent partial sums (no -ffast-math).

#include <cstdint>
#include <string>

#include "cpu_retriever/dot.h"
#include "cpu_retriever/key_index.h"

namespace ra::retriever {

// Top-k keys of q: [dim] among keys: [n, dim]. Writes min(k, n) results to ids: [k] and scores: [k],
// best first, and returns how many. Single-threaded; does n dot products. Throws ra::Error if k < 0,
// n < 0 or dim <= 0.
int exact_top_k(const float* q, const float* keys, int64_t n, int64_t dim, int k, int64_t* ids,
                float* scores);
// The same over keys: n rows of dtype (kv_row_bytes(dtype, dim) bytes each); scores are dot_row's (for
// 16-bit rows: those over the keys' widened float32 copy).
int exact_top_k(const float* q, const void* keys, KvDtype dtype, int64_t n, int64_t dim, int k, int64_t* ids,
                float* scores);

// exact_top_k for nq queries: queries: [nq, dim]; ids_out: [nq, k], scores_out: [nq, k] (row i holds
// query i's results; when k > n the slots past n are set to id -1 and score -inf). Parallel over
// queries with OpenMP on `threads` threads (<= 0: OpenMP's default). Results equal exact_top_k's.
void exact_top_k_batch(const float* queries, int64_t nq, const float* keys, int64_t n, int64_t dim,
                       int k, int64_t* ids_out, float* scores_out, int threads);

// Exact search over a key matrix the caller owns and keeps alive (not copied). Ignores ef and nprobe.
class FlatIndex final : public KeyIndex {
 public:
  FlatIndex(const float* keys, int64_t n, int64_t dim);
  FlatIndex(const void* keys, KvDtype dtype, int64_t n, int64_t dim);  // keys: n rows of dtype

  std::string name() const override { return "flat"; }
  int64_t size() const override { return n_; }
  int64_t dim() const override { return dim_; }
  size_t memory_bytes() const override { return 0; }  // nothing beyond the caller's keys

  // distance_computations += n per search.
  int search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
             SearchStats* stats) const override;

 private:
  const void* keys_;  // n_ rows of dtype_, borrowed
  KvDtype dtype_;
  int64_t n_;
  int64_t dim_;
};

}  // namespace ra::retriever
