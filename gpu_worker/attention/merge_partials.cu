#include <math_constants.h>

#include "gpu_worker/attention/merge_partials_cuda.h"

namespace ra::cuda {
namespace {

// One block per head; threads stride over head_dim. The empty cases never combine arithmetically:
// an empty side's o is not read at all, so a NaN or inf left in it cannot leak (0 · NaN = NaN).
__global__ void merge_partials_kernel(float* __restrict__ o_a, float* __restrict__ lse_a,
                                      const float* __restrict__ o_b, const float* __restrict__ lse_b,
                                      int head_dim) {
  const int h = blockIdx.x;
  const float la = lse_a[h];
  const float lb = lse_b[h];
  if (lb == -CUDART_INF_F) return;  // b is empty: a stays bit for bit (also empty ∪ empty)
  float* oa = o_a + static_cast<int64_t>(h) * head_dim;
  const float* ob = o_b + static_cast<int64_t>(h) * head_dim;
  float lse = lb;
  if (la == -CUDART_INF_F) {  // a is empty: the result is b, copied
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) oa[d] = ob[d];
  } else {
    const float m = fmaxf(la, lb);
    lse = m + log1pf(expf(-fabsf(la - lb)));
    const float wa = expf(la - lse);
    const float wb = expf(lb - lse);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) oa[d] = wa * oa[d] + wb * ob[d];
  }
  __syncthreads();  // every thread read lse_a[h] before it is overwritten
  if (threadIdx.x == 0) lse_a[h] = lse;
}

}  // namespace

cudaError_t merge_partials(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_heads,
                           int head_dim, cudaStream_t stream) {
  if (n_heads == 0) return cudaSuccess;
  const int threads = head_dim >= 128 ? 128 : 32;
  merge_partials_kernel<<<n_heads, threads, 0, stream>>>(o_a, lse_a, o_b, lse_b, head_dim);
  return cudaGetLastError();
}

}  // namespace ra::cuda
