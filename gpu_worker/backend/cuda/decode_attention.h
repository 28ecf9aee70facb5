#pragma once
// Attention of one decode token over a layer's KV cache, as a partial state (DESIGN §4): split-K
// flash-decoding. One launch serves full attention (all positions on the GPU) and the static set
// (sinks + window ring) of the offloaded modes: both attend over the slot prefix
// [0, valid_slots(*position, sinks, window)) of the cache (gpu_worker/backend/cuda/static_set.h).
//
//   q:       [n_heads][head_dim] float32, post-RoPE (device)
//   k_cache, v_cache: [n_kv_heads][kv_capacity][head_dim] T (device); query head h reads kv head
//            h / (n_heads / n_kv_heads). Slots at or beyond the valid count are never read.
//   scores:  s_j = (q · k_j) * scale
//   o:       [n_heads][head_dim] float32: Σ_j exp(s_j − lse) v_j
//   lse:     [n_heads] float32, natural log. No valid slot: lse = −inf and o = 0.
//
// Plan once (shapes, splits, workspace size), run every step: run() allocates nothing, reads the
// position from device memory and so can be captured in a CUDA graph and replayed for any position.
//
// How it runs: grid (kv heads or query heads) × max_splits. Each split reads the valid count n from
// *position (clamped to [0, kv_capacity]) and takes a balanced, contiguous share of [0, n): as many
// splits as give each at least 64 keys, so long contexts use every split and short ones fewer; a
// split that gets nothing writes an empty partial (lse = −inf). Then a combine kernel merges the
// splits' partial states per head. The combine is launched with programmatic dependent launch on
// non-default streams, so its launch overlaps the split kernel (RA_DECODE_ATTENTION_NO_PDL set in the
// environment turns that off).
//   kTensorCore (bf16, head_dim 64 or 128, ≤ 8 query heads per kv head): one CTA per (kv head, split)
//     serves the whole GQA group, so K/V are read once; 4 warps, each with its own 3-stage cp.async
//     pipeline of 16-key tiles; QK and PV on mma.sync (keys as the M dimension, heads padded to N=8).
//   kGeneric (any head_dim ≤ 256 that is a multiple of 8, any group, float or bf16): one CTA per
//     (query head, split), fp32 CUDA-core math, one key per warp at a time.
//
// Workspace (device, plan.workspace_bytes, 4-byte aligned; its contents need no initialisation):
//   at 0:                partial o   [max_splits][n_heads][head_dim] float32
//   at plan.lse_offset:  partial lse [max_splits][n_heads] float32 (natural log; −inf = empty)

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

enum class DecodeAttentionKernel { kGeneric, kTensorCore };

struct DecodeAttentionPlan {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int group = 1;               // n_heads / n_kv_heads: query heads per kv head
  int64_t kv_capacity = 0;
  DType kv_dtype = DType::kBF16;
  DecodeAttentionKernel kernel = DecodeAttentionKernel::kGeneric;
  int max_splits = 1;          // key-range splits per kv head (grid.y); ranges are sized at run time
  size_t lse_offset = 0;       // byte offset of the partial lse array in the workspace
  size_t workspace_bytes = 0;  // device scratch for the splits' partial states
};

// The most splits a plan uses (the combine kernel keeps one weight per split in shared memory).
inline constexpr int kDecodeAttentionMaxSplits = 128;

// sm_count: the device's multiprocessors (cudaDevAttrMultiProcessorCount). Throws ra::Error for a
// shape the kernels do not support (the message names it).
DecodeAttentionPlan plan_decode_attention(int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity,
                                          DType kv_dtype, int sm_count);

// T must match plan.kv_dtype. sinks, window: as in static_set.h (window 0 = full attention); with
// window > 0 the cache must hold sinks + window slots. Returns cudaErrorInvalidValue for a plan or
// arguments that do not fit together, cudaErrorMisalignedAddress when the tensor-core path gets K/V
// pointers that are not 16-byte aligned or q that is not 8-byte aligned. Two launches on `stream`.
template <typename T>
cudaError_t decode_attention(const DecodeAttentionPlan& plan, const float* q, const T* k_cache, const T* v_cache,
                             const int64_t* position, int64_t sinks, int64_t window, float scale, float* o,
                             float* lse, void* workspace, cudaStream_t stream);

}  // namespace ra::cuda
