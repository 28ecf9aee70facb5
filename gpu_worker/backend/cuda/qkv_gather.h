#pragma once
// Copies a prefill chunk's post-RoPE q/k/v out of the CUDA backend's layouts into the token-major
// float32 rows of a QkvChunk (gpu_worker/backend/backend.h), for the QkvObserver (ra dump-qkv, the
// offloaded modes' index build data), or K and V already in the forms the retrievers take (kBuild's
// WireRows: common/wire_rows.h), coded on the GPU so that only those bytes cross PCIe.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/wire_rows.h"
#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

// out[i][g * head_dim + d] = float(cache[(g * capacity + first_slot + i) * head_dim + d]) for i < n,
// g < n_kv_heads: the rows of slots [first_slot, first_slot + n) of a [n_kv_heads][capacity][head_dim]
// cache as [n][n_kv_heads * head_dim] float32.
template <typename T>
cudaError_t gather_kv_rows(const T* cache, int64_t capacity, int64_t first_slot, int n, int n_kv_heads, int head_dim,
                           float* out, cudaStream_t stream);

// No row failed: the value encode_kv_rows' error word starts at.
inline constexpr unsigned long long kNoBadRow = ~0ull;

// The rows of slots [first_slot, first_slot + n) of a [n_kv_heads][capacity][head_dim] cache, coded in
// form `rows` as out: [n][n_kv_heads] rows of wire_row_bytes(rows, head_dim) bytes (row i * n_kv_heads + g
// is slot first_slot + i of kv head g), by exactly the CPU's rules:
//   f32:  the values (gather_kv_rows);
//   bf16: their bits (a copy for a bf16 cache; round to nearest even, NaN kept quiet, as common/half.h's
//         to_bf16, for a float32 cache);
//   int8: quantise_q8_row (common/q8_row.h): peak = max |x| as float, scale = peak / 127 (IEEE
//         division), code = clamp(rint(x / scale), -127, 127) (IEEE division, ties to even), codes 0 for
//         scale 0; then the scale's 4 bytes.
// An int8 row holding inf or NaN cannot be coded: its bytes are left unspecified and *bad (device memory,
// set to kNoBadRow before the call) is lowered to the smallest such row index i * n_kv_heads + g, for
// the host to name after its copy. Other forms leave *bad alone (bf16 and f32 carry inf and NaN).
template <typename T>
cudaError_t encode_kv_rows(const T* cache, int64_t capacity, int64_t first_slot, int n, int n_kv_heads, int head_dim,
                           WireRows rows, std::byte* out, unsigned long long* bad, cudaStream_t stream);

}  // namespace ra::cuda
