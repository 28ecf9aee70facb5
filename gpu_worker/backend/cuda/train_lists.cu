#include "gpu_worker/backend/cuda/train_lists.h"

#include <cub/block/block_scan.cuh>

namespace ra::cuda {
namespace {

constexpr int kThreads = 512;

// Larger float, larger key (finite scores; -0 sorts just below +0).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// k = 1 (the keys' best training queries, TrainListOptions::key_query_width): a warp per row, one pass.
// Each lane keeps the best order key of its columns (the first on ties: its columns ascend), then the
// warp takes the best of the lanes (ties: the lower column): the radix select's pick for k = 1, without
// its four passes and block per row, which cost 8.7 s of a 128K prefill on 8,192-wide rows.
constexpr int kArgMaxWarps = 8;

__global__ void __launch_bounds__(kArgMaxWarps * 32)
    row_arg_max_kernel(const float* __restrict__ scores, int64_t ld, int rows, int n, int32_t* __restrict__ out,
                       int64_t out_ld) {
  const int row_index = static_cast<int>(blockIdx.x) * kArgMaxWarps + static_cast<int>(threadIdx.x / 32);
  const int lane = static_cast<int>(threadIdx.x & 31);
  if (row_index >= rows) return;  // a whole warp leaves together
  const float* row = scores + static_cast<int64_t>(row_index) * ld;
  uint32_t best_key = 0;
  int best_col = -1;
#pragma unroll 4
  for (int i = lane; i < n; i += 32) {
    const uint32_t key = order_key(row[i]);
    if (best_col < 0 || key > best_key) {
      best_key = key;
      best_col = i;
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const uint32_t other_key = __shfl_down_sync(0xffffffffu, best_key, offset);
    const int other_col = __shfl_down_sync(0xffffffffu, best_col, offset);
    if (other_col >= 0 &&
        (best_col < 0 || other_key > best_key || (other_key == best_key && other_col < best_col))) {
      best_key = other_key;
      best_col = other_col;
    }
  }
  if (lane == 0) out[static_cast<int64_t>(row_index) * out_ld] = best_col;  // -1 when n == 0
}

// One block per row. Four passes find the key of the k-th best score, 8 bits at a time: a histogram of
// the next byte over the keys that match the bytes found so far. The histogram's adds are aggregated
// per warp (__match_any_sync): scores of one row share their top bytes, and unaggregated shared-memory
// atomics on one bin would serialise the whole row. Then every key above that threshold is taken, and
// as many keys equal to it as are still missing, in column order (a block scan); a rank sort of the at
// most kMaxTrainListWidth picks orders them.
__global__ void __launch_bounds__(kThreads)
    row_top_k_kernel(const float* __restrict__ scores, int64_t ld, int n, int k, int32_t* __restrict__ out,
                     int64_t out_ld) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ unsigned hist[256];
  __shared__ uint32_t s_prefix, s_mask;
  __shared__ int s_need, s_above_count;
  __shared__ uint32_t pick_key[kMaxTrainListWidth];
  __shared__ int32_t pick_id[kMaxTrainListWidth];

  const float* row = scores + static_cast<int64_t>(blockIdx.x) * ld;
  int32_t* dst = out + static_cast<int64_t>(blockIdx.x) * out_ld;
  const int tid = threadIdx.x, lane = tid & 31;
  const int kk = min(k, n);
  if (tid == 0) {
    s_prefix = 0;
    s_mask = 0;
    s_need = kk;
    s_above_count = 0;
  }
  __syncthreads();
  for (int shift = 24; shift >= 0 && kk > 0; shift -= 8) {
    for (int b = tid; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix, mask = s_mask;
    for (int base = 0; base < n; base += kThreads) {  // every lane of a warp takes part in the match
      const int i = base + tid;
      const uint32_t u = i < n ? order_key(row[i]) : 0u;
      const bool counted = i < n && (u & mask) == prefix;
      const uint32_t bin = counted ? (u >> shift) & 255u : 256u + lane;  // uncounted lanes match nobody
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (counted && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
    }
    __syncthreads();
    if (tid == 0) {
      const int need = s_need;
      int above = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + static_cast<int>(hist[b]) >= need) {
          s_prefix = prefix | (static_cast<uint32_t>(b) << shift);
          s_mask = mask | (255u << shift);
          s_need = need - above;
          break;
        }
        above += static_cast<int>(hist[b]);
      }
    }
    __syncthreads();
  }
  const uint32_t threshold = s_prefix;
  const int ties = kk > 0 ? s_need : 0;  // keys equal to the threshold still to take; kk - ties lie above it
  for (int i = tid; i < n && kk > 0; i += kThreads) {
    const uint32_t u = order_key(row[i]);
    if (u > threshold) {
      const int at = atomicAdd(&s_above_count, 1);
      pick_key[at] = u;
      pick_id[at] = i;
    }
  }
  int taken = 0;  // the same in every thread (the scan's aggregate)
  for (int base = 0; base < n && taken < ties; base += kThreads) {
    const int i = base + tid;
    const int tie = i < n && order_key(row[i]) == threshold ? 1 : 0;
    int rank = 0, total = 0;
    Scan(scan_storage).ExclusiveSum(tie, rank, total);
    if (tie && taken + rank < ties) {
      pick_key[kk - ties + taken + rank] = threshold;
      pick_id[kk - ties + taken + rank] = i;
    }
    taken += total;
    __syncthreads();  // scan_storage is reused
  }
  __syncthreads();
  for (int j = tid; j < kk; j += kThreads) {  // rank sort: j's place is the count of picks better than it
    const uint32_t key = pick_key[j];
    const int32_t id = pick_id[j];
    int place = 0;
    for (int m = 0; m < kk; ++m) place += pick_key[m] > key || (pick_key[m] == key && pick_id[m] < id) ? 1 : 0;
    dst[place] = id;
  }
  for (int j = kk + tid; j < k; j += kThreads) dst[j] = -1;
}

template <typename T>
__global__ void gather_train_queries_kernel(const T* __restrict__ q, int64_t chunk_first, int n_heads, int head_dim,
                                            const int64_t* __restrict__ positions, int j0, int n_train,
                                            T* __restrict__ train_q) {
  const int j = j0 + static_cast<int>(blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int64_t row = positions[j] - chunk_first;
  const T* src = q + (row * n_heads + h) * head_dim;
  T* dst = train_q + (static_cast<int64_t>(h) * n_train + j) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) dst[d] = src[d];
}

}  // namespace

cudaError_t row_top_k(const float* scores, int64_t ld, int rows, int n, int k, int32_t* out, int64_t out_ld,
                      cudaStream_t stream) {
  if (k < 1 || k > kMaxTrainListWidth || n < 0 || rows < 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (k == 1) {  // each key's best training query: one pass, a warp per row
    const unsigned blocks = static_cast<unsigned>((rows + kArgMaxWarps - 1) / kArgMaxWarps);
    row_arg_max_kernel<<<blocks, kArgMaxWarps * 32, 0, stream>>>(scores, ld, rows, n, out, out_ld);
    return cudaGetLastError();
  }
  row_top_k_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(scores, ld, n, k, out, out_ld);
  return cudaGetLastError();
}

template <typename T>
cudaError_t gather_train_queries(const T* q, int64_t chunk_first, int n_heads, int head_dim, const int64_t* positions,
                                 int j0, int count, int n_train, T* train_q, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(count), static_cast<unsigned>(n_heads));
  gather_train_queries_kernel<T><<<grid, 128, 0, stream>>>(q, chunk_first, n_heads, head_dim, positions, j0, n_train,
                                                           train_q);
  return cudaGetLastError();
}

template cudaError_t gather_train_queries<float>(const float*, int64_t, int, int, const int64_t*, int, int, int, float*,
                                                 cudaStream_t);
template cudaError_t gather_train_queries<bfloat16>(const bfloat16*, int64_t, int, int, const int64_t*, int, int, int,
                                                    bfloat16*, cudaStream_t);

}  // namespace ra::cuda
