#pragma once
// Elementwise and row-wise kernels of the CUDA backend (everything that is neither a matrix product
// nor attention). All pointers are device pointers; no allocation, no synchronisation (graph-safe).
//
// Layouts used throughout:
//   x (residual stream):  [n][dim] float32
//   qkv (fused projection output): [n][(n_heads + 2 * n_kv_heads) * head_dim] float32: q heads, then
//                         k heads, then v heads, each head_dim wide
//   KV cache of a layer:  [n_kv_heads][kv_capacity][head_dim] T; the key of slot s for kv head g is at
//                         k_cache + (g * kv_capacity + s) * head_dim
//   RoPE: rotate-half convention (pairs (j, j + head_dim/2)), angle = float32(position) * inv_freq[j]
//         rounded to float32 (as the CPU table does), cos/sin evaluated in double precision.
//         inv_freq: [head_dim / 2] float32 (gpu_worker/model/rope.h, llama3 scaling included).

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

// x[i][:] = float(embed[tokens[i]][:]) for i < n. tokens: [n] int32, embed: [vocab][dim] T.
template <typename T>
cudaError_t embed_rows(const int32_t* tokens, const T* embed, float* x, int n, int dim, cudaStream_t stream);

// y[i][:] = T(x[i][:] * rsqrt(mean(x[i]^2) + eps) * w[:]). x: [n][dim] float32, w: [dim] float32,
// y: [n][dim] T.
template <typename T>
cudaError_t rms_norm_rows(const float* x, const float* w, T* y, int n, int dim, float eps, cudaStream_t stream);

// Prefill: RoPE and KV append for n tokens at positions pos0 + i.
//   qkv: [n][(n_heads + 2 n_kv_heads) * head_dim] float32
//   q:  [n][n_heads][head_dim] T, post-RoPE
//   the key (post-RoPE) and value of token i go to slot pos0 + i of k_cache / v_cache (T).
// cudaErrorInvalidValue (nothing launched) for an odd head_dim or pos0 + n > kv_capacity.
template <typename T>
cudaError_t rope_append_prefill(const float* qkv, T* q, T* k_cache, T* v_cache, int n, int64_t pos0, int n_heads,
                                int n_kv_heads, int head_dim, int64_t kv_capacity, const float* inv_freq,
                                cudaStream_t stream);

// Decode: RoPE and KV append for the one token at position p = *position (device, so that the launch
// can be replayed in a CUDA graph). Slots follow gpu_worker/backend/cuda/static_set.h
// (cache_slot(p, sinks, window); window 0 = full attention).
//   qkv: [(n_heads + 2 n_kv_heads) * head_dim] float32; q: [n_heads][head_dim] float32, post-RoPE.
//   When evicted_position(p, sinks, window) >= 0, the key and value in the slot being overwritten (that
//   position's) are first copied to evicted_k, evicted_v: [n_kv_heads][head_dim] float32; otherwise
//   those buffers are left untouched. They may be null when window == 0; with window > 0 both are
//   required and kv_capacity >= sinks + window (else cudaErrorInvalidValue, nothing launched).
//   A slot outside [0, kv_capacity) (full cache overrun: the host checks capacity) is not written; q is.
template <typename T>
cudaError_t rope_append_decode(const float* qkv, float* q, T* k_cache, T* v_cache, const int64_t* position,
                               int64_t sinks, int64_t window, int n_heads, int n_kv_heads, int head_dim,
                               int64_t kv_capacity, const float* inv_freq, float* evicted_k, float* evicted_v,
                               cudaStream_t stream, const float* cos_sin = nullptr);

// The rotation of the decode position *position, once per step for every layer: cos_sin: [head_dim/2][2]
// float32, (cos, sin) of float32(position) * inv_freq[j] evaluated as rope_append_decode does. Passed to
// rope_append_decode as cos_sin, it replaces that kernel's own evaluation (double-precision sin/cos of
// angles up to ~1e6 rad, a few microseconds of latency per layer) with a table read; results are
// identical.
cudaError_t rope_cos_sin_decode(const int64_t* position, const float* inv_freq, int head_dim, float* cos_sin,
                                cudaStream_t stream);

// SwiGLU of the fused gate/up projection: gate_up: [n][2 * inter] float32 with gate_j at column 2j
// and up_j at 2j + 1; out[i][j] = T(silu(gate_j) * up_j), out: [n][inter] T.
template <typename T>
cudaError_t swiglu_rows(const float* gate_up, T* out, int n, int inter, cudaStream_t stream);

// Copies rows of a KV cache: for each kv head g, slots [src_begin, src_begin + count) of src
// ([n_kv_heads][src_capacity][head_dim] T) to slots [dst_begin, dst_begin + count) of dst
// ([n_kv_heads][dst_capacity][head_dim] T). Used to move a prefilled prompt's sinks and window into
// the static cache. The source and destination ranges must not overlap.
template <typename T>
cudaError_t copy_kv_slots(const T* src, int64_t src_capacity, int64_t src_begin, T* dst, int64_t dst_capacity,
                          int64_t dst_begin, int64_t count, int n_kv_heads, int head_dim, cudaStream_t stream);

// dst[i] = float(src[i]) for i < n (observer copies of q/k/v, tests).
template <typename T>
cudaError_t to_float_array(const T* src, float* dst, int64_t n, cudaStream_t stream);

// dst[i] = T(src[i]) for i < n (weight upload: float32 staging to T).
template <typename T>
cudaError_t from_float_array(const float* src, T* dst, int64_t n, cudaStream_t stream);

// dst[i] = T(scale * N(0, 1)-like value from (seed, i)) for i < n: random weights made on the GPU for
// timing runs (the values do not matter; they are deterministic and not all zero). dst may be huge
// (int64 indexing). The value: splitmix64 of (seed, i), the Irwin–Hall sum of its four 16-bit parts,
// standardised: mean 0, variance 1, bounded by ±2·sqrt(3).
template <typename T>
cudaError_t fill_random(T* dst, int64_t n, float scale, uint64_t seed, cudaStream_t stream);

// dst[i] = value for i < n (float32).
cudaError_t fill_constant(float* dst, int64_t n, float value, cudaStream_t stream);

// *position += 1 (device): the last node of a decode-step graph, so replays walk the positions.
cudaError_t increment_position(int64_t* position, cudaStream_t stream);

}  // namespace ra::cuda
