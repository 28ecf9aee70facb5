#pragma once
// The merge of partial attention states on the GPU: the contract of merge_partials.h (this folder),
// as a kernel. Used by the CUDA backend to fold the retrievers' (o, lse) into the static (sinks +
// window) partial of each query head.

#include <cuda_runtime.h>

#include <cstdint>

namespace ra::cuda {

// For each head h < n_heads, merges (lse_b[h], o_b[h]) into (lse_a[h], o_a[h]) in place:
//   o_a, o_b:     [n_heads][head_dim] float32 (device)
//   lse_a, lse_b: [n_heads] float32, natural log (device)
// An empty set has lse = −inf and o = 0; empty ∪ empty stays (−inf, 0), never NaN.
cudaError_t merge_partials(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int n_heads,
                           int head_dim, cudaStream_t stream);

}  // namespace ra::cuda
