// prefill_attention: checks the arguments and sends bf16 with head_dim 64 or 128 to the tensor-core
// kernel (prefill_attention_mma.cuh), everything else to the CUDA-core kernel
// (prefill_attention_generic.cu).

#include <atomic>
#include <cmath>
#include <cstdint>

#include "gpu_worker/backend/cuda/prefill_attention.h"
#include "gpu_worker/backend/cuda/prefill_attention_mma.cuh"

namespace ra::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// Query rows per warp of the tensor-core kernel that prefill_attention uses, per head_dim (16 or 32;
// Config in prefill_attention_mma.cuh explains the trade). ra-bench-kernels times both.
constexpr int kDefaultRowsPerWarp64 = 32;
constexpr int kDefaultRowsPerWarp128 = 32;

// Raises the kernel's dynamic shared-memory limit above the 48 KiB default, and asks for the largest
// shared-memory carve-out so that Config::kMinBlocksPerSm blocks fit on an SM (the kernel reads global
// memory only through cp.async.cg, which bypasses L1). The attributes belong to the current device's
// context, so they are set once per device (bit d of `done`); threads racing on the first call set the
// same values, which is harmless.
template <int kHeadDim, int kRowTiles>
cudaError_t opt_in_shared_memory() {
  static std::atomic<uint64_t> done{0};
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (done.load(std::memory_order_acquire) & bit) != 0) return cudaSuccess;
  const auto kernel = prefill_mma::prefill_attention_mma_kernel<kHeadDim, kRowTiles>;
  if (const cudaError_t err =
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(prefill_mma::Config<kHeadDim, kRowTiles>::kSmemBytes));
      err != cudaSuccess) {
    return err;
  }
  if (const cudaError_t err =
          cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
      err != cudaSuccess) {
    return err;
  }
  done.fetch_or(bit, std::memory_order_release);
  return cudaSuccess;
}

template <int kHeadDim, int kRowTiles>
cudaError_t launch_mma(const prefill_mma::Params& params, cudaStream_t stream) {
  using C = prefill_mma::Config<kHeadDim, kRowTiles>;
  const int q_tiles = (params.n + C::kBlockM - 1) / C::kBlockM;
  if (q_tiles > 65535) return cudaErrorInvalidValue;  // grid.y limit (tensor_core_eligible keeps n below it)
  if (const cudaError_t err = opt_in_shared_memory<kHeadDim, kRowTiles>(); err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(params.n_heads), static_cast<unsigned>(q_tiles));
  prefill_mma::prefill_attention_mma_kernel<kHeadDim, kRowTiles><<<grid, C::kThreads, C::kSmemBytes, stream>>>(params);
  return cudaGetLastError();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The tensor-core kernel moves rows in 16-byte chunks: every row start must be 16-byte aligned, which
// holds for head_dim 64/128 once the base pointers are. It keeps positions in 32-bit integers (fewer
// registers), with ample headroom, and takes the row max before scaling, which needs scale > 0.
// Anything else takes the CUDA-core kernel.
bool tensor_core_eligible(const bfloat16* q, const bfloat16* k_cache, const bfloat16* v_cache, const bfloat16* o, int n,
                          int64_t pos0, int head_dim, float scale) {
  constexpr int64_t kMaxPositions = int64_t{1} << 30;
  constexpr int kMaxQueries = 65535 * 128;  // grid.y <= 65535 query tiles of 128
  return (head_dim == 64 || head_dim == 128) && pos0 + n <= kMaxPositions && n <= kMaxQueries && scale > 0.0f &&
         std::isfinite(scale) && aligned16(q) && aligned16(k_cache) && aligned16(v_cache) && aligned16(o);
}

// Runs the tensor-core kernel; the caller has checked the arguments and eligibility, and n > 0.
cudaError_t run_tensor_core(int rows_per_warp, const bfloat16* q, const bfloat16* k_cache, const bfloat16* v_cache,
                            bfloat16* o, int n, int64_t pos0, int n_heads, int n_kv_heads, int head_dim,
                            int64_t kv_capacity, float scale, cudaStream_t stream) {
  const prefill_mma::Params params{.q = q,
                                   .k = k_cache,
                                   .v = v_cache,
                                   .o = o,
                                   .kv_capacity = kv_capacity,
                                   .pos0 = static_cast<int>(pos0),
                                   .n = n,
                                   .n_heads = n_heads,
                                   .group = n_heads / n_kv_heads,
                                   .scale_log2 = scale * kLog2e};
  if (head_dim == 64) {
    return rows_per_warp == 16 ? launch_mma<64, 1>(params, stream) : launch_mma<64, 2>(params, stream);
  }
  return rows_per_warp == 16 ? launch_mma<128, 1>(params, stream) : launch_mma<128, 2>(params, stream);
}

}  // namespace

template <typename T>
cudaError_t prefill_attention(const T* q, const T* k_cache, const T* v_cache, T* o, int n, int64_t pos0, int n_heads,
                              int n_kv_heads, int head_dim, int64_t kv_capacity, float scale, cudaStream_t stream) {
  if (const cudaError_t err =
          detail::check_prefill_args(q, k_cache, v_cache, o, n, pos0, n_heads, n_kv_heads, head_dim, kv_capacity);
      err != cudaSuccess) {
    return err;
  }
  if (n == 0) return cudaSuccess;
  if constexpr (dtype_of<T>() == DType::kBF16) {
    if (tensor_core_eligible(q, k_cache, v_cache, o, n, pos0, head_dim, scale)) {
      const int rows_per_warp = head_dim == 64 ? kDefaultRowsPerWarp64 : kDefaultRowsPerWarp128;
      return run_tensor_core(rows_per_warp, q, k_cache, v_cache, o, n, pos0, n_heads, n_kv_heads, head_dim, kv_capacity,
                             scale, stream);
    }
  }
  return prefill_attention_generic<T>(q, k_cache, v_cache, o, n, pos0, n_heads, n_kv_heads, head_dim, kv_capacity,
                                      scale, stream);
}

cudaError_t prefill_attention_tensor_core(int rows_per_warp, const bfloat16* q, const bfloat16* k_cache,
                                          const bfloat16* v_cache, bfloat16* o, int n, int64_t pos0, int n_heads,
                                          int n_kv_heads, int head_dim, int64_t kv_capacity, float scale,
                                          cudaStream_t stream) {
  if (const cudaError_t err =
          detail::check_prefill_args(q, k_cache, v_cache, o, n, pos0, n_heads, n_kv_heads, head_dim, kv_capacity);
      err != cudaSuccess) {
    return err;
  }
  if ((rows_per_warp != 16 && rows_per_warp != 32) ||
      !tensor_core_eligible(q, k_cache, v_cache, o, n, pos0, head_dim, scale)) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  return run_tensor_core(rows_per_warp, q, k_cache, v_cache, o, n, pos0, n_heads, n_kv_heads, head_dim, kv_capacity,
                         scale, stream);
}

template cudaError_t prefill_attention<float>(const float*, const float*, const float*, float*, int, int64_t, int, int,
                                              int, int64_t, float, cudaStream_t);
template cudaError_t prefill_attention<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*, int,
                                                 int64_t, int, int, int, int64_t, float, cudaStream_t);

}  // namespace ra::cuda
