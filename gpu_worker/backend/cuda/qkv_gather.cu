#include "gpu_worker/backend/cuda/qkv_gather.h"

namespace ra::cuda {
namespace {

// One thread per output element; grid-stride so any n works.
template <typename T>
__global__ void gather_kv_rows_kernel(const T* __restrict__ cache, int64_t capacity, int64_t first_slot, int n,
                                      int n_kv_heads, int head_dim, float* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t total = static_cast<int64_t>(n) * row;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / row;
    const int64_t g = (e % row) / head_dim;
    const int64_t d = e % head_dim;
    out[e] = to_float(cache[(g * capacity + first_slot + i) * head_dim + d]);
  }
}

}  // namespace

template <typename T>
cudaError_t gather_kv_rows(const T* cache, int64_t capacity, int64_t first_slot, int n, int n_kv_heads, int head_dim,
                           float* out, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n) * n_kv_heads * head_dim;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  gather_kv_rows_kernel<T><<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), threads, 0, stream>>>(
      cache, capacity, first_slot, n, n_kv_heads, head_dim, out);
  return cudaGetLastError();
}

template cudaError_t gather_kv_rows<float>(const float*, int64_t, int64_t, int, int, int, float*, cudaStream_t);
template cudaError_t gather_kv_rows<bfloat16>(const bfloat16*, int64_t, int64_t, int, int, int, float*, cudaStream_t);

}  // namespace ra::cuda
