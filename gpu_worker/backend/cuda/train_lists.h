#pragma once
// The training lists of the attention-aware graph, found on the GPU while a layer's keys are resident
// (issue 16 item 2): each training query's exact top keys by inner product. The backend multiplies the
// group's training queries by the kv head's offloaded keys (Gemm, float32 scores) a block of rows at a
// time and selects each row's top k here, so the retrievers receive the lists with the layer and build
// without a brute force of their own.

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

inline constexpr int kMaxTrainListWidth = 256;

// Top k of each of `rows` rows of scores ([rows][ld] float32, row r's first n entries): out[r * out_ld + j]
// = the column of row r's j-th best score, by (score desc, column asc), -1 past min(k, n). Exact (a
// radix select on the scores' order-preserving bits, four 8-bit passes, then the ties by column).
// 1 <= k <= kMaxTrainListWidth.
cudaError_t row_top_k(const float* scores, int64_t ld, int rows, int n, int k, int32_t* out, int64_t out_ld,
                      cudaStream_t stream);

// Copies training queries out of a prefill chunk: q: [chunk_rows][n_heads][head_dim] (the chunk's
// post-RoPE queries, token-major, first token at sequence position chunk_first); positions: [n_train]
// device int64, ascending. For j in [j0, j0 + count) (positions[j] inside the chunk):
// train_q[(h * n_train + j) * head_dim + d] = q[((positions[j] - chunk_first) * n_heads + h) * head_dim + d].
template <typename T>
cudaError_t gather_train_queries(const T* q, int64_t chunk_first, int n_heads, int head_dim, const int64_t* positions,
                                 int j0, int count, int n_train, T* train_q, cudaStream_t stream);

}  // namespace ra::cuda
