// Row-wise and elementwise kernels of the CUDA backend (ops.h). Sizes that can exceed 2^31 elements
// (KV caches, weights) are indexed in int64; the RoPE rotation avoids FMA contraction so that it rounds
// exactly like the CPU's apply_rope.

#include <algorithm>
#include <cstdint>

#include "gpu_worker/backend/cuda/ops.h"
#include "gpu_worker/backend/cuda/static_set.h"

namespace ra::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int64_t kMaxGridStrideBlocks = 1 << 16;

// Blocks for a grid-stride loop over n items.
int grid_stride_blocks(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxGridStrideBlocks));
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// Σ v over a block of kThreads threads, the same value in every thread (fixed order across warps).
__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / kWarp];
  v = warp_sum(v);
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / kWarp; ++w) total += partial[w];
  __syncthreads();  // partial may be reused by a later call
  return total;
}

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// ---- embedding, RMSNorm, SwiGLU ------------------------------------------------------------------

// One block per token.
template <typename T>
__global__ void embed_rows_kernel(const int32_t* tokens, const T* embed, float* x, int dim) {
  const int64_t i = blockIdx.x;
  const T* src = embed + static_cast<int64_t>(tokens[i]) * dim;
  float* dst = x + i * dim;
  for (int d = threadIdx.x; d < dim; d += kThreads) dst[d] = to_float(src[d]);
}

// One block per row; y = w * (x * inv) with inv = 1 / sqrt(Σ x² / dim + eps), the CPU's expression.
template <typename T>
__global__ void rms_norm_rows_kernel(const float* x, const float* w, T* y, int dim, float eps) {
  const float* xi = x + static_cast<int64_t>(blockIdx.x) * dim;
  T* yi = y + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int d = threadIdx.x; d < dim; d += kThreads) ss += xi[d] * xi[d];
  const float inv = 1.0f / sqrtf(block_sum(ss) / static_cast<float>(dim) + eps);
  for (int d = threadIdx.x; d < dim; d += kThreads) yi[d] = from_float<T>(w[d] * (xi[d] * inv));
}

template <typename T>
__global__ void swiglu_rows_kernel(const float* gate_up, T* out, int64_t total, int inter) {
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t i = e / inter;
    const int64_t j = e - i * inter;
    const float* row = gate_up + i * 2 * inter;
    out[e] = from_float<T>(silu_mul(row[2 * j], row[2 * j + 1]));
  }
}

// ---- RoPE and KV append ------------------------------------------------------------------------------

// cs[j] = (cos, sin) of float32(position) * inv_freq[j], evaluated in double and rounded to float, as
// make_rope_table does; j < half. Called by every thread of the block; ends with a barrier.
__device__ void rope_cos_sin(int64_t position, const float* inv_freq, int half, float2* cs) {
  const float p = static_cast<float>(position);  // rounds to nearest, like the host conversion
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const double angle = static_cast<double>(__fmul_rn(p, inv_freq[j]));  // float32 product
    double s, c;
    sincos(angle, &s, &c);
    cs[j] = make_float2(static_cast<float>(c), static_cast<float>(s));
  }
  __syncthreads();
}

// The rotated pair (j, j + half) of head vector x: the CPU's x1 * c - x2 * s and x2 * c + x1 * s with
// every product and sum rounded separately (no FMA), so both sides round identically.
__device__ __forceinline__ float2 rotate_pair(const float* x, int j, int half, float2 cs) {
  const float x1 = x[j];
  const float x2 = x[j + half];
  return make_float2(__fsub_rn(__fmul_rn(x1, cs.x), __fmul_rn(x2, cs.y)),
                     __fadd_rn(__fmul_rn(x2, cs.x), __fmul_rn(x1, cs.y)));
}

// Rotates the n_src_heads heads at src ([heads][head_dim] float32) into dst: head h goes to
// dst + h * dst_head_stride. Threads of the block stride over (head, pair).
template <typename T>
__device__ void rotate_heads(const float* src, int heads, int head_dim, const float2* cs, T* dst,
                             int64_t dst_head_stride) {
  const int half = head_dim / 2;
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int h = idx / half;
    const int j = idx - h * half;
    const float2 r = rotate_pair(src + static_cast<int64_t>(h) * head_dim, j, half, cs[j]);
    T* d = dst + h * dst_head_stride;
    d[j] = from_float<T>(r.x);
    d[j + half] = from_float<T>(r.y);
  }
}

// One block per token i (position pos0 + i, cache slot pos0 + i). Dynamic shared memory: [half] float2.
template <typename T>
__global__ void rope_append_prefill_kernel(const float* qkv, T* q, T* k_cache, T* v_cache, int64_t pos0,
                                           int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity,
                                           const float* inv_freq) {
  extern __shared__ float2 cs[];
  const int64_t i = blockIdx.x;
  const int64_t pos = pos0 + i;
  rope_cos_sin(pos, inv_freq, head_dim / 2, cs);
  const int64_t width = static_cast<int64_t>(n_heads + 2 * n_kv_heads) * head_dim;
  const float* row = qkv + i * width;
  const float* k_src = row + static_cast<int64_t>(n_heads) * head_dim;
  const float* v_src = k_src + static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t cache_stride = kv_capacity * head_dim;  // between kv heads
  rotate_heads<T>(row, n_heads, head_dim, cs, q + i * n_heads * head_dim, head_dim);
  rotate_heads<T>(k_src, n_kv_heads, head_dim, cs, k_cache + pos * head_dim, cache_stride);
  for (int idx = threadIdx.x; idx < n_kv_heads * head_dim; idx += blockDim.x) {
    const int g = idx / head_dim;
    const int d = idx - g * head_dim;
    v_cache[g * cache_stride + pos * head_dim + d] = from_float<T>(v_src[idx]);
  }
}

// One block. The slot's old K/V is copied out (when a position is evicted) by the same thread that then
// overwrites it, so no barrier is needed between the read and the write.
template <typename T>
__global__ void rope_append_decode_kernel(const float* qkv, float* q, T* k_cache, T* v_cache, const int64_t* position,
                                          int64_t sinks, int64_t window, int n_heads, int n_kv_heads, int head_dim,
                                          int64_t kv_capacity, const float* inv_freq, float* evicted_k,
                                          float* evicted_v, const float2* cos_sin) {
  extern __shared__ float2 cs[];
  const int64_t pos = *position;
  const int64_t slot = cache_slot(pos, sinks, window);
  const bool evict = evicted_position(pos, sinks, window) >= 0 && evicted_k != nullptr && evicted_v != nullptr;
  const bool in_cache = slot >= 0 && slot < kv_capacity;  // the host checks capacity; never write outside
  const int half = head_dim / 2;
  if (cos_sin != nullptr) {  // computed once for the step by rope_cos_sin_decode_kernel
    for (int j = threadIdx.x; j < half; j += blockDim.x) cs[j] = cos_sin[j];
    __syncthreads();
  } else {
    rope_cos_sin(pos, inv_freq, half, cs);
  }
  rotate_heads<float>(qkv, n_heads, head_dim, cs, q, head_dim);
  if (!in_cache) return;

  const float* k_src = qkv + static_cast<int64_t>(n_heads) * head_dim;
  const float* v_src = k_src + static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t cache_stride = kv_capacity * head_dim;
  for (int idx = threadIdx.x; idx < n_kv_heads * half; idx += blockDim.x) {
    const int g = idx / half;
    const int j = idx - g * half;
    T* k = k_cache + g * cache_stride + slot * head_dim;
    if (evict) {
      evicted_k[g * head_dim + j] = to_float(k[j]);
      evicted_k[g * head_dim + j + half] = to_float(k[j + half]);
    }
    const float2 r = rotate_pair(k_src + g * head_dim, j, half, cs[j]);
    k[j] = from_float<T>(r.x);
    k[j + half] = from_float<T>(r.y);
  }
  for (int idx = threadIdx.x; idx < n_kv_heads * head_dim; idx += blockDim.x) {
    const int g = idx / head_dim;
    const int d = idx - g * head_dim;
    T* v = v_cache + g * cache_stride + slot * head_dim + d;
    if (evict) evicted_v[idx] = to_float(*v);
    *v = from_float<T>(v_src[idx]);
  }
}

// ---- copies, conversions, fills ---------------------------------------------------------------------

// U is the copy unit: uint4 (16 bytes) when rows and pointers allow it, else T. units: per head row.
template <typename U>
__global__ void copy_kv_slots_kernel(const U* src, int64_t src_capacity, int64_t src_begin, U* dst,
                                     int64_t dst_capacity, int64_t dst_begin, int64_t count, int64_t units,
                                     int64_t total) {
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t u = e % units;
    const int64_t t = e / units;  // g * count + s
    const int64_t s = t % count;
    const int64_t g = t / count;
    dst[(g * dst_capacity + dst_begin + s) * units + u] = src[(g * src_capacity + src_begin + s) * units + u];
  }
}

template <typename T>
__global__ void to_float_kernel(const T* src, float* dst, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = to_float(src[i]);
}

template <typename T>
__global__ void from_float_kernel(const float* src, T* dst, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = from_float<T>(src[i]);
}

// A standard-normal-like value from (seed, i): splitmix64 of the counter, and the Irwin–Hall sum of its
// four 16-bit parts (each (k + 0.5) / 65536, uniform with mean 1/2), standardised (variance 4/12 → 1).
__device__ __forceinline__ float normalish(uint64_t seed, int64_t i) {
  uint64_t z = seed + (static_cast<uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float sum = static_cast<float>((z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48)) + 2.0f;
  return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;  // sqrt(3)
}

template <typename T>
__global__ void fill_random_kernel(T* dst, int64_t n, float scale, uint64_t seed) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = from_float<T>(scale * normalish(seed, i));
}

__global__ void fill_constant_kernel(float* dst, int64_t n, float value) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = value;
}

__global__ void increment_position_kernel(int64_t* position) { *position += 1; }

// One block: the step's (cos, sin) table, the same evaluation as rope_cos_sin.
__global__ void rope_cos_sin_decode_kernel(const int64_t* position, const float* inv_freq, int half, float2* out) {
  extern __shared__ float2 cs[];
  rope_cos_sin(*position, inv_freq, half, cs);
  for (int j = threadIdx.x; j < half; j += blockDim.x) out[j] = cs[j];
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

bool valid_rope_shape(int n_heads, int n_kv_heads, int head_dim) {
  return n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0;
}

}  // namespace

template <typename T>
cudaError_t embed_rows(const int32_t* tokens, const T* embed, float* x, int n, int dim, cudaStream_t stream) {
  if (n < 0 || dim < 0) return cudaErrorInvalidValue;
  if (n == 0 || dim == 0) return cudaSuccess;
  embed_rows_kernel<T><<<n, kThreads, 0, stream>>>(tokens, embed, x, dim);
  return cudaGetLastError();
}

template <typename T>
cudaError_t rms_norm_rows(const float* x, const float* w, T* y, int n, int dim, float eps, cudaStream_t stream) {
  if (n < 0 || dim <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  rms_norm_rows_kernel<T><<<n, kThreads, 0, stream>>>(x, w, y, dim, eps);
  return cudaGetLastError();
}

template <typename T>
cudaError_t rope_append_prefill(const float* qkv, T* q, T* k_cache, T* v_cache, int n, int64_t pos0, int n_heads,
                                int n_kv_heads, int head_dim, int64_t kv_capacity, const float* inv_freq,
                                cudaStream_t stream) {
  if (n < 0 || pos0 < 0 || !valid_rope_shape(n_heads, n_kv_heads, head_dim)) return cudaErrorInvalidValue;
  if (pos0 + n > kv_capacity) return cudaErrorInvalidValue;  // slots pos0 .. pos0 + n - 1
  if (n == 0) return cudaSuccess;
  const size_t smem = static_cast<size_t>(head_dim / 2) * sizeof(float2);
  rope_append_prefill_kernel<T><<<n, kThreads, smem, stream>>>(qkv, q, k_cache, v_cache, pos0, n_heads, n_kv_heads,
                                                               head_dim, kv_capacity, inv_freq);
  return cudaGetLastError();
}

template <typename T>
cudaError_t rope_append_decode(const float* qkv, float* q, T* k_cache, T* v_cache, const int64_t* position,
                               int64_t sinks, int64_t window, int n_heads, int n_kv_heads, int head_dim,
                               int64_t kv_capacity, const float* inv_freq, float* evicted_k, float* evicted_v,
                               cudaStream_t stream, const float* cos_sin) {
  if (!valid_rope_shape(n_heads, n_kv_heads, head_dim) || sinks < 0 || window < 0) return cudaErrorInvalidValue;
  if (window > 0 && (kv_capacity < sinks + window || evicted_k == nullptr || evicted_v == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const size_t smem = static_cast<size_t>(head_dim / 2) * sizeof(float2);
  rope_append_decode_kernel<T><<<1, kThreads, smem, stream>>>(qkv, q, k_cache, v_cache, position, sinks, window,
                                                              n_heads, n_kv_heads, head_dim, kv_capacity, inv_freq,
                                                              evicted_k, evicted_v,
                                                              reinterpret_cast<const float2*>(cos_sin));
  return cudaGetLastError();
}

cudaError_t rope_cos_sin_decode(const int64_t* position, const float* inv_freq, int head_dim, float* cos_sin,
                                cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 2 != 0 || position == nullptr || inv_freq == nullptr || cos_sin == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int half = head_dim / 2;
  rope_cos_sin_decode_kernel<<<1, half < 256 ? half : 256, static_cast<size_t>(half) * sizeof(float2), stream>>>(
      position, inv_freq, half, reinterpret_cast<float2*>(cos_sin));
  return cudaGetLastError();
}

template <typename T>
cudaError_t swiglu_rows(const float* gate_up, T* out, int n, int inter, cudaStream_t stream) {
  if (n < 0 || inter < 0) return cudaErrorInvalidValue;
  const int64_t total = static_cast<int64_t>(n) * inter;
  if (total == 0) return cudaSuccess;
  swiglu_rows_kernel<T><<<grid_stride_blocks(total), kThreads, 0, stream>>>(gate_up, out, total, inter);
  return cudaGetLastError();
}

template <typename T>
cudaError_t copy_kv_slots(const T* src, int64_t src_capacity, int64_t src_begin, T* dst, int64_t dst_capacity,
                          int64_t dst_begin, int64_t count, int n_kv_heads, int head_dim, cudaStream_t stream) {
  if (count < 0 || n_kv_heads < 0 || head_dim <= 0 || src_begin < 0 || dst_begin < 0 ||
      src_begin + count > src_capacity || dst_begin + count > dst_capacity) {
    return cudaErrorInvalidValue;
  }
  if (count == 0 || n_kv_heads == 0) return cudaSuccess;
  const int64_t row_bytes = static_cast<int64_t>(head_dim) * static_cast<int64_t>(sizeof(T));
  if (row_bytes % 16 == 0 && aligned16(src) && aligned16(dst)) {
    const int64_t units = row_bytes / 16;
    const int64_t total = n_kv_heads * count * units;
    copy_kv_slots_kernel<uint4><<<grid_stride_blocks(total), kThreads, 0, stream>>>(
        reinterpret_cast<const uint4*>(src), src_capacity, src_begin, reinterpret_cast<uint4*>(dst), dst_capacity,
        dst_begin, count, units, total);
  } else {
    const int64_t total = n_kv_heads * count * head_dim;
    copy_kv_slots_kernel<T><<<grid_stride_blocks(total), kThreads, 0, stream>>>(
        src, src_capacity, src_begin, dst, dst_capacity, dst_begin, count, head_dim, total);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t to_float_array(const T* src, float* dst, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  to_float_kernel<T><<<grid_stride_blocks(n), kThreads, 0, stream>>>(src, dst, n);
  return cudaGetLastError();
}

template <typename T>
cudaError_t from_float_array(const float* src, T* dst, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  from_float_kernel<T><<<grid_stride_blocks(n), kThreads, 0, stream>>>(src, dst, n);
  return cudaGetLastError();
}

template <typename T>
cudaError_t fill_random(T* dst, int64_t n, float scale, uint64_t seed, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  fill_random_kernel<T><<<grid_stride_blocks(n), kThreads, 0, stream>>>(dst, n, scale, seed);
  return cudaGetLastError();
}

cudaError_t fill_constant(float* dst, int64_t n, float value, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  fill_constant_kernel<<<grid_stride_blocks(n), kThreads, 0, stream>>>(dst, n, value);
  return cudaGetLastError();
}

cudaError_t increment_position(int64_t* position, cudaStream_t stream) {
  increment_position_kernel<<<1, 1, 0, stream>>>(position);
  return cudaGetLastError();
}

#define RA_INSTANTIATE_OPS(T)                                                                                       \
  template cudaError_t embed_rows<T>(const int32_t*, const T*, float*, int, int, cudaStream_t);                   \
  template cudaError_t rms_norm_rows<T>(const float*, const float*, T*, int, int, float, cudaStream_t);           \
  template cudaError_t rope_append_prefill<T>(const float*, T*, T*, T*, int, int64_t, int, int, int, int64_t,     \
                                              const float*, cudaStream_t);                                        \
  template cudaError_t rope_append_decode<T>(const float*, float*, T*, T*, const int64_t*, int64_t, int64_t, int, \
                                             int, int, int64_t, const float*, float*, float*, cudaStream_t,       \
                                             const float*);                                                       \
  template cudaError_t swiglu_rows<T>(const float*, T*, int, int, cudaStream_t);                                  \
  template cudaError_t copy_kv_slots<T>(const T*, int64_t, int64_t, T*, int64_t, int64_t, int64_t, int, int,      \
                                        cudaStream_t);                                                            \
  template cudaError_t to_float_array<T>(const T*, float*, int64_t, cudaStream_t);                                \
  template cudaError_t from_float_array<T>(const float*, T*, int64_t, cudaStream_t);                              \
  template cudaError_t fill_random<T>(T*, int64_t, float, uint64_t, cudaStream_t);

RA_INSTANTIATE_OPS(float)
RA_INSTANTIATE_OPS(bfloat16)
#undef RA_INSTANTIATE_OPS

}  // namespace ra::cuda
