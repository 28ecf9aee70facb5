// The CUDA-core prefill attention: one warp per (query, head), online softmax over the keys in order.
// Written to be obviously correct (it is the fallback for every case the tensor-core kernel does not
// take, and a second reference in the tests); speed is secondary.

#include <math_constants.h>

#include "gpu_worker/backend/cuda/prefill_attention.h"

namespace ra::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = 32 * kWarpsPerBlock;

// Sum over the warp; every lane gets the same bits (each butterfly step adds the same two values,
// in commutative order, on both partner lanes).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Lane l owns dims d = l + 32 t, t < kPerLane (coalesced row reads); kPerLane * 32 >= head_dim.
template <typename T, int kPerLane>
__global__ void __launch_bounds__(kThreads)
    prefill_attention_generic_kernel(const T* __restrict__ q,        // [n][n_heads][head_dim]
                                     const T* __restrict__ k_cache,  // [n_kv_heads][kv_capacity][head_dim]
                                     const T* __restrict__ v_cache,  // [n_kv_heads][kv_capacity][head_dim]
                                     T* __restrict__ o,              // [n][n_heads][head_dim]
                                     int n, int64_t pos0, int n_heads, int group, int head_dim, int64_t kv_capacity,
                                     float scale) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (item >= static_cast<int64_t>(n) * n_heads) return;  // warp-uniform
  const int lane = threadIdx.x % 32;
  const int i = n - 1 - static_cast<int>(item / n_heads);  // the latest (longest) queries start first
  const int h = static_cast<int>(item % n_heads);

  const T* q_row = q + (static_cast<int64_t>(i) * n_heads + h) * head_dim;
  const int64_t kv_offset = static_cast<int64_t>(h / group) * kv_capacity * head_dim;
  const T* k_head = k_cache + kv_offset;
  const T* v_head = v_cache + kv_offset;

  float qv[kPerLane];
  float acc[kPerLane];
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    qv[t] = d < head_dim ? to_float(q_row[d]) : 0.0f;
    acc[t] = 0.0f;
  }

  float m = -CUDART_INF_F;        // running max of the scores (natural units)
  float l = 0.0f;                 // running Σ exp(s_j − m)
  const int64_t last = pos0 + i;  // query i sees slots [0, pos0 + i]
  for (int64_t j = 0; j <= last; ++j) {
    const T* k_row = k_head + j * head_dim;
    const T* v_row = v_head + j * head_dim;
    float dot = 0.0f;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < head_dim) dot = fmaf(qv[t], to_float(k_row[d]), dot);
    }
    const float s = warp_sum(dot) * scale;
    const float m_new = fmaxf(m, s);
    const float alpha = expf(m - m_new);  // 0 on the first key (m = −inf, s finite)
    const float p = expf(s - m_new);
    l = l * alpha + p;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < head_dim) acc[t] = fmaf(p, to_float(v_row[d]), acc[t] * alpha);
    }
    m = m_new;
  }

  const float inv_l = 1.0f / l;  // l >= 1: the maximum key contributes exp(0)
  T* o_row = o + (static_cast<int64_t>(i) * n_heads + h) * head_dim;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < head_dim) o_row[d] = from_float<T>(acc[t] * inv_l);
  }
}

template <typename T, int kPerLane>
cudaError_t launch_generic(const T* q, const T* k_cache, const T* v_cache, T* o, int n, int64_t pos0, int n_heads,
                           int group, int head_dim, int64_t kv_capacity, float scale, cudaStream_t stream) {
  const int64_t warps = static_cast<int64_t>(n) * n_heads;
  const int64_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  prefill_attention_generic_kernel<T, kPerLane><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      q, k_cache, v_cache, o, n, pos0, n_heads, group, head_dim, kv_capacity, scale);
  return cudaGetLastError();
}

}  // namespace

namespace detail {

cudaError_t check_prefill_args(const void* q, const void* k_cache, const void* v_cache, const void* o, int n,
                               int64_t pos0, int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity) {
  const bool ok = n >= 0 && pos0 >= 0 && n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head_dim >= 1 &&
                  head_dim <= 256 && pos0 <= kv_capacity &&
                  n <= kv_capacity - pos0 &&  // pos0 + n <= kv_capacity, without overflow
                  (n == 0 || (q != nullptr && k_cache != nullptr && v_cache != nullptr && o != nullptr));
  return ok ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace detail

template <typename T>
cudaError_t prefill_attention_generic(const T* q, const T* k_cache, const T* v_cache, T* o, int n, int64_t pos0,
                                      int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity, float scale,
                                      cudaStream_t stream) {
  if (const cudaError_t err =
          detail::check_prefill_args(q, k_cache, v_cache, o, n, pos0, n_heads, n_kv_heads, head_dim, kv_capacity);
      err != cudaSuccess) {
    return err;
  }
  if (n == 0) return cudaSuccess;
  const int group = n_heads / n_kv_heads;
  // Registers per lane sized to the head: 32, 64, 128 or 256 dims per warp.
  if (head_dim <= 32) {
    return launch_generic<T, 1>(q, k_cache, v_cache, o, n, pos0, n_heads, group, head_dim, kv_capacity, scale, stream);
  }
  if (head_dim <= 64) {
    return launch_generic<T, 2>(q, k_cache, v_cache, o, n, pos0, n_heads, group, head_dim, kv_capacity, scale, stream);
  }
  if (head_dim <= 128) {
    return launch_generic<T, 4>(q, k_cache, v_cache, o, n, pos0, n_heads, group, head_dim, kv_capacity, scale, stream);
  }
  return launch_generic<T, 8>(q, k_cache, v_cache, o, n, pos0, n_heads, group, head_dim, kv_capacity, scale, stream);
}

template cudaError_t prefill_attention_generic<float>(const float*, const float*, const float*, float*, int, int64_t,
                                                      int, int, int, int64_t, float, cudaStream_t);
template cudaError_t prefill_attention_generic<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*,
                                                         int, int64_t, int, int, int, int64_t, float, cudaStream_t);

}  // namespace ra::cuda
