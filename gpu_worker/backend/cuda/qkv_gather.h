#pragma once
// Copies a prefill chunk's post-RoPE q/k/v out of the CUDA backend's layouts into the token-major
// float32 rows of a QkvChunk (gpu_worker/backend/backend.h), for the QkvObserver (ra dump-qkv, the
// offloaded modes' index build data).

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

// out[i][g * head_dim + d] = float(cache[(g * capacity + first_slot + i) * head_dim + d]) for i < n,
// g < n_kv_heads: the rows of slots [first_slot, first_slot + n) of a [n_kv_heads][capacity][head_dim]
// cache as [n][n_kv_heads * head_dim] float32.
template <typename T>
cudaError_t gather_kv_rows(const T* cache, int64_t capacity, int64_t first_slot, int n, int n_kv_heads, int head_dim,
                           float* out, cudaStream_t stream);

}  // namespace ra::cuda
