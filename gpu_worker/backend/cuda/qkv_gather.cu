#include "gpu_worker/backend/cuda/qkv_gather.h"

namespace ra::cuda {
namespace {

// bf16 bits of x: round to nearest even, NaN kept (quiet), exactly as common/half.h's to_bf16.
__device__ __forceinline__ uint16_t bf16_bits(float x) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__device__ __forceinline__ uint16_t bf16_bits(bfloat16 x) { return __bfloat16_as_ushort(x); }

// A cache element as the output element: float32 (exact), or bf16 bits (rounded as to_bf16).
template <typename T>
__device__ __forceinline__ void store_as(float* out, T x) { *out = to_float(x); }
template <typename T>
__device__ __forceinline__ void store_as(uint16_t* out, T x) { *out = bf16_bits(x); }

// One thread per element of the [n][n_kv_heads][head_dim] output rows; grid-stride so any n works.
template <typename T, typename Out>
__global__ void gather_kv_rows_kernel(const T* __restrict__ cache, int64_t capacity, int64_t first_slot, int n,
                                      int n_kv_heads, int head_dim, Out* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t total = static_cast<int64_t>(n) * row;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / row;
    const int64_t g = (e % row) / head_dim;
    const int64_t d = e % head_dim;
    store_as(out + e, cache[(g * capacity + first_slot + i) * head_dim + d]);
  }
}

constexpr int kWarpsPerBlock = 4;

// One warp per (token, kv head) row: the lanes find the row's peak together (max is exact in any
// order), then code their elements. Every division is __fdiv_rn, so the codes are the CPU's bit for bit
// whatever the compiler's flags (the project builds without fast math anyway).
template <typename T>
__global__ void encode_q8_rows_kernel(const T* __restrict__ cache, int64_t capacity, int64_t first_slot, int n,
                                      int n_kv_heads, int head_dim, uint8_t* __restrict__ out,
                                      unsigned long long* __restrict__ bad) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = static_cast<int64_t>(n) * n_kv_heads;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32; r < rows; r += stride) {
    const int64_t i = r / n_kv_heads, g = r % n_kv_heads;
    const T* x = cache + (g * capacity + first_slot + i) * head_dim;
    float peak = 0.0f;
    bool finite = true;
    for (int d = lane; d < head_dim; d += 32) {
      const float v = to_float(x[d]);
      finite = finite && isfinite(v);
      peak = fmaxf(peak, fabsf(v));
    }
    for (int offset = 16; offset > 0; offset /= 2) peak = fmaxf(peak, __shfl_xor_sync(0xffffffffu, peak, offset));
    if (!__all_sync(0xffffffffu, finite)) {  // warp-uniform: the whole warp leaves the row
      if (lane == 0) atomicMin(bad, static_cast<unsigned long long>(r));
      continue;
    }
    const float scale = __fdiv_rn(peak, 127.0f);
    uint8_t* row = out + r * (head_dim + static_cast<int64_t>(kQ8ScaleBytes));
    for (int d = lane; d < head_dim; d += 32) {
      const float c = scale > 0.0f ? rintf(__fdiv_rn(to_float(x[d]), scale)) : 0.0f;
      row[d] = static_cast<uint8_t>(static_cast<int8_t>(fminf(fmaxf(c, -127.0f), 127.0f)));
    }
    if (lane < 4) row[head_dim + lane] = static_cast<uint8_t>(__float_as_uint(scale) >> (8 * lane));  // little-endian
  }
}

unsigned grid_for(int64_t items, int per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

}  // namespace

template <typename T>
cudaError_t gather_kv_rows(const T* cache, int64_t capacity, int64_t first_slot, int n, int n_kv_heads, int head_dim,
                           float* out, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n) * n_kv_heads * head_dim;
  if (total == 0) return cudaSuccess;
  gather_kv_rows_kernel<T, float><<<grid_for(total, 256), 256, 0, stream>>>(cache, capacity, first_slot, n,
                                                                           n_kv_heads, head_dim, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t encode_kv_rows(const T* cache, int64_t capacity, int64_t first_slot, int n, int n_kv_heads, int head_dim,
                           WireRows rows, std::byte* out, unsigned long long* bad, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n) * n_kv_heads * head_dim;
  if (total == 0) return cudaSuccess;
  switch (rows) {
    case WireRows::kF32:
      return gather_kv_rows<T>(cache, capacity, first_slot, n, n_kv_heads, head_dim, reinterpret_cast<float*>(out),
                               stream);
    case WireRows::kBF16:
      gather_kv_rows_kernel<T, uint16_t><<<grid_for(total, 256), 256, 0, stream>>>(
          cache, capacity, first_slot, n, n_kv_heads, head_dim, reinterpret_cast<uint16_t*>(out));
      return cudaGetLastError();
    case WireRows::kQ8:
      encode_q8_rows_kernel<T><<<grid_for(static_cast<int64_t>(n) * n_kv_heads, kWarpsPerBlock),
                                 32 * kWarpsPerBlock, 0, stream>>>(cache, capacity, first_slot, n, n_kv_heads,
                                                                   head_dim, reinterpret_cast<uint8_t*>(out), bad);
      return cudaGetLastError();
  }
  return cudaErrorInvalidValue;
}

template cudaError_t encode_kv_rows<float>(const float*, int64_t, int64_t, int, int, int, WireRows, std::byte*,
                                           unsigned long long*, cudaStream_t);
template cudaError_t encode_kv_rows<bfloat16>(const bfloat16*, int64_t, int64_t, int, int, int, WireRows, std::byte*,
                                              unsigned long long*, cudaStream_t);
template cudaError_t gather_kv_rows<float>(const float*, int64_t, int64_t, int, int, int, float*, cudaStream_t);
template cudaError_t gather_kv_rows<bfloat16>(const bfloat16*, int64_t, int64_t, int, int, int, float*, cudaStream_t);

}  // namespace ra::cuda
