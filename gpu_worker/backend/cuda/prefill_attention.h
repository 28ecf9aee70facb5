#pragma once
// Causal attention of a prefill chunk on the tensor cores (flash-attention style: tiles of K/V in
// shared memory, online softmax, nothing of size chunk x context in memory).
//
// A chunk of n query tokens at positions [pos0, pos0 + n) attends over the cache slots [0, pos0 + n)
// (slot = position), query i seeing slots [0, pos0 + i]:
//   q:       [n][n_heads][head_dim] T, post-RoPE (device)
//   k_cache, v_cache: [n_kv_heads][kv_capacity][head_dim] T (device); query head h reads kv head
//            h / (n_heads / n_kv_heads). Slots >= pos0 + n are never read (they may hold anything).
//   o:       [n][n_heads][head_dim] T = softmax((q · k) * scale) · v, written for every query; nothing
//            else is written.
// Accumulation is float32; the softmax is computed online, so no score matrix is materialised.
//
// bf16 with head_dim 64 or 128 (16-byte aligned q, k_cache, v_cache, o; scale > 0) runs on the tensor
// cores (mma.sync, fp32 accumulation, P rounded to bf16 for P·V; one block per (head, 128 queries), so
// a short chunk at a long context leaves SMs idle: there is no split over the keys). Every other
// combination (float32, other head dims) runs a plain, slow CUDA-core kernel with the same contract.
//
// Preconditions (else cudaErrorInvalidValue, nothing launched): n >= 0, pos0 >= 0, n_heads and
// n_kv_heads > 0 with n_heads % n_kv_heads == 0, 1 <= head_dim <= 256, pos0 + n <= kv_capacity,
// non-null pointers when n > 0. n == 0 is a no-op.
// No allocation, no synchronisation, no host work beyond the launch: capturable in a CUDA graph. The
// first call on a device sets the tensor-core kernel's shared-memory limit (cudaFuncSetAttribute), so
// make one call before capturing in cudaStreamCaptureModeGlobal.

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

template <typename T>
cudaError_t prefill_attention(const T* q, const T* k_cache, const T* v_cache, T* o, int n, int64_t pos0, int n_heads,
                              int n_kv_heads, int head_dim, int64_t kv_capacity, float scale, cudaStream_t stream);

// The two kernels behind prefill_attention, callable alone for tests and benchmarks; same contract.
//
// The CUDA-core kernel, every T and head_dim: one warp per (query, head), online softmax over the
// keys. Slow; a second reference for the tensor-core kernel.
template <typename T>
cudaError_t prefill_attention_generic(const T* q, const T* k_cache, const T* v_cache, T* o, int n, int64_t pos0,
                                      int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity, float scale,
                                      cudaStream_t stream);

// The tensor-core kernel with 16 or 32 query rows per warp (prefill_attention picks one per head_dim).
// Also cudaErrorInvalidValue when it cannot take the arguments: head_dim not 64/128, a pointer not
// 16-byte aligned, pos0 + n > 2^30, or scale not positive and finite.
cudaError_t prefill_attention_tensor_core(int rows_per_warp, const bfloat16* q, const bfloat16* k_cache,
                                          const bfloat16* v_cache, bfloat16* o, int n, int64_t pos0, int n_heads,
                                          int n_kv_heads, int head_dim, int64_t kv_capacity, float scale,
                                          cudaStream_t stream);

namespace detail {
// cudaSuccess when the arguments satisfy the preconditions above, else cudaErrorInvalidValue.
cudaError_t check_prefill_args(const void* q, const void* k_cache, const void* v_cache, const void* o, int n,
                               int64_t pos0, int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity);
}  // namespace detail

}  // namespace ra::cuda
