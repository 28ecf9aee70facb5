#pragma once
// Exact top-k of many queries over one key matrix by inner product, scored in blocks by BLAS: the
// graph build's training lists (every prefill query and every key against every key), which dominate
// its cost. Block shapes are fixed and each block is one single-threaded sgemm, so the result does not
// depend on the thread count. Per query, only keys that beat the worst of its best k so far are kept,
// and the scan starts near the query block's own position (rows in sequence order have their best keys
// there), so few keys get past the first compare. Scores may differ from dot_f32's in the last bits; the benchmark's ground
// truth therefore stays on exact_top_k_batch, which matches a FlatIndex search bit for bit.

#include <cstdint>

#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {

// queries: [nq][dim], keys: [n][dim] float32. ids_out, scores_out: [nq][k], row i best first (higher
// score, then lower id), padded with id -1 and score -inf when k > n. Parallel over blocks of queries
// on `threads` OpenMP threads (<= 0: OpenMP's default). Makes OpenBLAS single-threaded for the process
// (it runs inside the OpenMP threads). Throws ra::Error on bad shapes.
void blas_top_k_batch(const float* queries, int64_t nq, const float* keys, int64_t n, int64_t dim, int k,
                      int64_t* ids_out, float* scores_out, int threads);

// The same over keys stored as dtype (kv_dtype.h): [n][dim] elements at keys. 16-bit rows are widened
// exactly, a key block at a time, so the lists equal those over the widened float32 copy.
void blas_top_k_batch(const float* queries, int64_t nq, const void* keys, KvDtype dtype, int64_t n, int64_t dim,
                      int k, int64_t* ids_out, float* scores_out, int threads);

}  // namespace ra::retriever
