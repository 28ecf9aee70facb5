// Batch-1 GEMV (gemv.h). Design, for HBM bandwidth:
//   - a warp computes a group of kRowsPerWarp = 2 consecutive rows (kSwiGlu's gate/up pair), so one
//     read of x from shared memory serves two rows;
//   - each lane keeps 2 × kUnroll = 16 independent 16-byte weight loads in flight (ld.global.nc, no L1
//     allocation: every weight byte is used once), 8 KB per warp, before it touches any of them;
//   - x (RMS-normalised once per block when norm_w is given) is staged in shared memory as float32,
//     [cols] floats (up to the device's opt-in limit: 56 KB for cols = 14336);
//   - the grid is the number of blocks that are resident at once (occupancy API), and each block takes
//     a contiguous share of row groups that differs from the others' by at most one group, so every
//     SM streams the same number of bytes;
//   - while x is staged, each warp prefetches the head of its first rows into L2;
//   - launched with programmatic stream serialisation (PDL): the launch gap and the prologue overlap the
//     preceding kernel, and the kernel waits (griddepcontrol.wait) before reading x, norm_w, y or W.
// Rows whose start is not 16-byte aligned (cols not a multiple of 16 / sizeof(T), or W misaligned) use
// a scalar path with the same structure.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "gpu_worker/backend/cuda/gemv.h"

namespace ra::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarp * kWarpsPerBlock;
constexpr int kRowsPerWarp = 2;
constexpr int kUnroll = 8;             // 16-byte chunks per row per lane per batch
constexpr int kScalarUnroll = 4;       // elements per row per lane per batch on the scalar path
constexpr int kPrefetchBytes = 2048;   // per row of a warp's first group
constexpr int kLine = 128;             // bytes of an L2 line

// 16 bytes of weights and the floats of x they multiply.
template <typename T>
struct Chunk;

template <>
struct Chunk<bfloat16> {
  static constexpr int kElems = 8;
  // bf16 → float is a 16-bit shift; element 2k is the low half of word k (little endian).
  __device__ __forceinline__ static float dot(const uint4& w, const float (&x)[kElems], float acc) {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      acc = fmaf(__uint_as_float(words[k] << 16), x[2 * k], acc);
      acc = fmaf(__uint_as_float(words[k] & 0xFFFF0000u), x[2 * k + 1], acc);
    }
    return acc;
  }
};

template <>
struct Chunk<float> {
  static constexpr int kElems = 4;
  __device__ __forceinline__ static float dot(const uint4& w, const float (&x)[kElems], float acc) {
    acc = fmaf(__uint_as_float(w.x), x[0], acc);
    acc = fmaf(__uint_as_float(w.y), x[1], acc);
    acc = fmaf(__uint_as_float(w.z), x[2], acc);
    acc = fmaf(__uint_as_float(w.w), x[3], acc);
    return acc;
  }
};

// Streaming 16-byte load: read-only path, not kept in L1.
__device__ __forceinline__ uint4 load_weights(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Programmatic dependent launch (sm_90). launch_dependents lets the next kernel of the stream be
// scheduled before this one ends (it still waits for this one's results in its own wait); wait blocks
// until the preceding kernel has completed and its writes are visible. Both are no-ops when the launch
// did not ask for programmatic serialisation.
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// The x floats of one 16-byte chunk (xs is 16-byte aligned and chunk * kElems is a multiple of 4).
template <typename T>
__device__ __forceinline__ void load_x(const float* xs, int chunk, float (&x)[Chunk<T>::kElems]) {
  const float4* p = reinterpret_cast<const float4*>(xs + chunk * Chunk<T>::kElems);
#pragma unroll
  for (int k = 0; k < Chunk<T>::kElems / 4; ++k) {
    const float4 v = p[k];
    x[4 * k] = v.x;
    x[4 * k + 1] = v.y;
    x[4 * k + 2] = v.z;
    x[4 * k + 3] = v.w;
  }
}

// acc[r] = this lane's share of W[row r] · xs. Rows are 16-byte aligned and cols % kElems == 0.
// Lane l takes chunks l, l + 32, ...: each warp-wide load reads 512 contiguous bytes of a row.
template <typename T>
__device__ __forceinline__ void row_dots_vec(const T* const (&rows)[kRowsPerWarp], const float* xs, int cols,
                                             int lane, float (&acc)[kRowsPerWarp]) {
  constexpr int kElems = Chunk<T>::kElems;
  const int n = cols / kElems;  // chunks per row
  const uint4* w[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) w[r] = reinterpret_cast<const uint4*>(rows[r]);
  int c = lane;
  // Full batches: all kUnroll chunks of this lane exist. Every load is issued before any is used.
  for (; c + (kUnroll - 1) * kWarp < n; c += kUnroll * kWarp) {
    uint4 v[kRowsPerWarp][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) v[r][u] = load_weights(w[r] + c + u * kWarp);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float x[kElems];
      load_x<T>(xs, c + u * kWarp, x);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = Chunk<T>::dot(v[r][u], x, acc[r]);
    }
  }
  // The rest: fewer than kUnroll chunks for this lane.
  for (; c < n; c += kWarp) {
    uint4 v[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) v[r] = load_weights(w[r] + c);
    float x[kElems];
    load_x<T>(xs, c, x);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = Chunk<T>::dot(v[r], x, acc[r]);
  }
}

// The same with element loads, for rows that are not 16-byte aligned.
template <typename T>
__device__ __forceinline__ void row_dots_scalar(const T* const (&rows)[kRowsPerWarp], const float* xs, int cols,
                                                int lane, float (&acc)[kRowsPerWarp]) {
  int c = lane;
  for (; c + (kScalarUnroll - 1) * kWarp < cols; c += kScalarUnroll * kWarp) {
    float v[kRowsPerWarp][kScalarUnroll];
#pragma unroll
    for (int u = 0; u < kScalarUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) v[r][u] = to_float(rows[r][c + u * kWarp]);
    }
#pragma unroll
    for (int u = 0; u < kScalarUnroll; ++u) {
      const float x = xs[c + u * kWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = fmaf(v[r][u], x, acc[r]);
    }
  }
  for (; c < cols; c += kWarp) {
    const float x = xs[c];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = fmaf(to_float(rows[r][c]), x, acc[r]);
  }
}

// xs[c] = x[c], or with norm_w: norm_w[c] * (x[c] * inv), inv = 1 / sqrt(Σ x² / cols + eps) — the CPU's
// rms_norm expression. Called by every thread of the block; ends with a barrier.
__device__ void stage_input(const float* x, const float* norm_w, float eps, int cols, float* xs,
                            float (&partial)[kWarpsPerBlock]) {
  float ss = 0.0f;
  for (int c = threadIdx.x; c < cols; c += kThreads) {
    const float v = x[c];
    xs[c] = v;
    ss += v * v;
  }
  if (norm_w != nullptr) {
    ss = warp_sum(ss);
    if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < kWarpsPerBlock; ++w) total += partial[w];  // same order in every thread
    const float inv = 1.0f / sqrtf(total / static_cast<float>(cols) + eps);
    // Each thread rescales the elements it wrote itself: no barrier needed in between.
    for (int c = threadIdx.x; c < cols; c += kThreads) xs[c] = norm_w[c] * (xs[c] * inv);
  }
  __syncthreads();
}

// Lane 0 of the warp writes the group's outputs; acc holds the full row sums.
template <GemvEpilogue E>
__device__ __forceinline__ void write_rows(float* y, const float (&acc)[kRowsPerWarp], int64_t row0, int rows) {
  if constexpr (E == GemvEpilogue::kSwiGlu) {
    static_assert(kRowsPerWarp == 2, "kSwiGlu pairs rows 2i (gate) and 2i + 1 (up) in one warp");
    const float g = acc[0];
    y[row0 / 2] = g / (1.0f + expf(-g)) * acc[1];  // rows is even, so row0 + 1 < rows
  } else {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (row0 + r >= rows) break;
      if constexpr (E == GemvEpilogue::kStore) {
        y[row0 + r] = acc[r];
      } else {
        y[row0 + r] += acc[r];
      }
    }
  }
}

template <typename T, GemvEpilogue E, bool kVec>
__global__ void __launch_bounds__(kThreads, 2)
    gemv_kernel(const T* __restrict__ W, const float* __restrict__ x, const float* __restrict__ norm_w, float eps,
                float* __restrict__ y, int rows, int cols) {
  extern __shared__ float4 smem[];  // xs: [cols] float32, 16-byte aligned
  float* xs = reinterpret_cast<float*>(smem);
  __shared__ float partial[kWarpsPerBlock];
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;

  // This block's contiguous share [begin, end) of the row groups; warps stride over it.
  const int64_t groups = (static_cast<int64_t>(rows) + kRowsPerWarp - 1) / kRowsPerWarp;
  const int64_t begin = groups * blockIdx.x / gridDim.x;
  const int64_t end = groups * (blockIdx.x + 1) / gridDim.x;

  // The next kernel may start its prologue now. Until griddep_wait returns, this kernel touches no
  // memory that a preceding kernel may write: only L2 prefetches of W (a hint; L2 is coherent).
  griddep_launch_dependents();
  if (begin + warp < end) {  // the head of this warp's first rows, fetched while x is staged
    const int64_t row_bytes = static_cast<int64_t>(cols) * static_cast<int64_t>(sizeof(T));
    const int64_t bytes = row_bytes < kPrefetchBytes ? row_bytes : kPrefetchBytes;
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t row = (begin + warp) * kRowsPerWarp + r;
      if (row >= rows) break;
      const char* base = reinterpret_cast<const char*>(W + row * cols);
      for (int64_t off = static_cast<int64_t>(lane) * kLine; off < bytes; off += kWarp * kLine) {
        prefetch_l2(base + off);
      }
    }
  }
  griddep_wait();  // x, norm_w, y and W are read only after the preceding kernel has completed
  stage_input(x, norm_w, eps, cols, xs, partial);

  for (int64_t g = begin + warp; g < end; g += kWarpsPerBlock) {  // warp-uniform trip count
    const int64_t row0 = g * kRowsPerWarp;
    const T* row_ptr[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      // A missing last row (odd rows) re-reads the previous one; its result is not written.
      const int64_t row = row0 + r < rows ? row0 + r : rows - 1;
      row_ptr[r] = W + row * cols;
    }
    float acc[kRowsPerWarp] = {};
    if constexpr (kVec) {
      row_dots_vec<T>(row_ptr, xs, cols, lane, acc);
    } else {
      row_dots_scalar<T>(row_ptr, xs, cols, lane, acc);
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = warp_sum(acc[r]);
    if (lane == 0) write_rows<E>(y, acc, row0, rows);
  }
}

// ---- host side -------------------------------------------------------------------------------------

// Blocks of `kernel` (kThreads threads, `smem` dynamic bytes) resident on the whole current device,
// and its dynamic shared-memory limit; cached per (device, kernel, smem) so a launch costs one lookup.
// cudaErrorInvalidValue when x does not fit in shared memory (cols above ~58K floats).
struct Residency {
  int blocks = 0;
  int dynamic_smem_max = 0;
};

cudaError_t residency(const void* kernel, size_t smem, Residency* out) {
  struct Entry {
    int device;
    const void* kernel;
    size_t smem;
    Residency value;
  };
  static std::mutex mutex;
  static std::vector<Entry> cache;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  std::lock_guard lock(mutex);
  for (const Entry& e : cache) {
    if (e.device == device && e.kernel == kernel && e.smem == smem) {
      *out = e.value;
      return cudaSuccess;
    }
  }
  int sms = 0, optin = 0, per_sm = 0;
  cudaFuncAttributes attr{};
  if ((err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) return err;
  if ((err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) != cudaSuccess) {
    return err;
  }
  if ((err = cudaFuncGetAttributes(&attr, kernel)) != cudaSuccess) return err;
  // The dynamic limit plus the kernel's static shared memory may not exceed the opt-in limit.
  const int dynamic_max = optin - static_cast<int>(attr.sharedSizeBytes);
  if (smem > static_cast<size_t>(dynamic_max)) return cudaErrorInvalidValue;
  // Always the same value, so concurrent launchers cannot lower each other's limit.
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic_max);
  if (err != cudaSuccess) return err;
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem);
  if (err != cudaSuccess) return err;
  if (per_sm < 1) return cudaErrorInvalidConfiguration;
  const Residency value{sms * per_sm, dynamic_max};
  cache.push_back({device, kernel, smem, value});
  *out = value;
  return cudaSuccess;
}

// RA_CUDA_NO_PDL in the environment switches programmatic dependent launch off (a diagnostic switch).
bool programmatic_launch() {
  static const bool enabled = std::getenv("RA_CUDA_NO_PDL") == nullptr;
  return enabled;
}

template <typename T, GemvEpilogue E, bool kVec>
cudaError_t launch(const T* W, const float* x, const float* norm_w, float eps, float* y, int rows, int cols,
                   cudaStream_t stream) {
  const auto kernel = gemv_kernel<T, E, kVec>;
  const size_t smem = static_cast<size_t>(cols) * sizeof(float);
  Residency res;
  const cudaError_t err = residency(reinterpret_cast<const void*>(kernel), smem, &res);
  if (err != cudaSuccess) return err;
  const int64_t groups = (static_cast<int64_t>(rows) + kRowsPerWarp - 1) / kRowsPerWarp;
  const int64_t wanted = (groups + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int grid = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, res.blocks)));
  // Programmatic dependent launch: the prologue (weight prefetch) overlaps the preceding kernel's tail
  // and the launch gap, which matters at ~10 us per product.
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(grid));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  if (programmatic_launch()) {
    if (cudaLaunchKernelEx(&config, kernel, W, x, norm_w, eps, y, rows, cols) == cudaSuccess) return cudaSuccess;
    (void)cudaGetLastError();  // refused: clear that error and launch plainly (griddepcontrol are no-ops)
  }
  kernel<<<grid, kThreads, smem, stream>>>(W, x, norm_w, eps, y, rows, cols);
  return cudaGetLastError();
}

template <typename T, GemvEpilogue E>
cudaError_t dispatch_alignment(const T* W, const float* x, const float* norm_w, float eps, float* y, int rows,
                               int cols, cudaStream_t stream) {
  const bool aligned = reinterpret_cast<uintptr_t>(W) % 16 == 0 && cols % Chunk<T>::kElems == 0;
  if (aligned) return launch<T, E, true>(W, x, norm_w, eps, y, rows, cols, stream);
  return launch<T, E, false>(W, x, norm_w, eps, y, rows, cols, stream);
}

}  // namespace

template <typename T>
cudaError_t gemv(const T* W, const float* x, const float* norm_w, float eps, float* y, int rows, int cols,
                 GemvEpilogue epilogue, cudaStream_t stream) {
  if (rows < 0 || cols <= 0 || W == nullptr || x == nullptr || y == nullptr) return cudaErrorInvalidValue;
  if (epilogue == GemvEpilogue::kSwiGlu && rows % 2 != 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  switch (epilogue) {
    case GemvEpilogue::kStore:
      return dispatch_alignment<T, GemvEpilogue::kStore>(W, x, norm_w, eps, y, rows, cols, stream);
    case GemvEpilogue::kAddInto:
      return dispatch_alignment<T, GemvEpilogue::kAddInto>(W, x, norm_w, eps, y, rows, cols, stream);
    case GemvEpilogue::kSwiGlu:
      return dispatch_alignment<T, GemvEpilogue::kSwiGlu>(W, x, norm_w, eps, y, rows, cols, stream);
  }
  return cudaErrorInvalidValue;
}

template cudaError_t gemv<float>(const float*, const float*, const float*, float, float*, int, int, GemvEpilogue,
                                 cudaStream_t);
template cudaError_t gemv<bfloat16>(const bfloat16*, const float*, const float*, float, float*, int, int,
                                    GemvEpilogue, cudaStream_t);

}  // namespace ra::cuda
