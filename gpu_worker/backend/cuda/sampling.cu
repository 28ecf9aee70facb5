// Token sampling on the GPU (sampling.h): one block of 1024 threads, no scratch memory.
//
// Weights are the fixed-point integers q_i of gpu_worker/decode/sampler.h, so every mass below is an exact
// integer sum and the token cannot depend on the summation order: the CPU Sampler and this kernel agree
// bit for bit whenever their exp() round to the same float (double exp on both sides).
//
// Passes over the logits (each thread strides over them; they stay in L2):
//   1. max logit and its lowest index (NaN skipped); greedy ends here.
//   2. S = Σ q_i; for top-p also the level-0 histogram of the masses by the top 11 bits of the
//      order-preserving 32-bit key of the logit.
//   3. top-p only: radix select of λ, the largest logit whose kept mass Σ_{l >= λ} q reaches the need:
//      at each level a descending scan of the bins finds the one where the running mass crosses the need,
//      then the next pass histograms only the logits inside that bin by the next 11 (then 10) bits. The
//      3 levels resolve all 32 bits, so λ is exact; exp is evaluated only for logits inside the bin.
//   4. the walk: tiles of 4 consecutive logits per thread, a block-wide exclusive scan of the kept mass,
//      and the thread whose range holds r finds the token; stops at the tile that holds it.
// Shared-memory histograms use 32-bit atomics only (native): each mass is kept as two 32-bit sums of the
// low and high 20 bits of q, each with a count of its wrap-arounds.

#include <math_constants.h>

#include <cstdint>

#include "gpu_worker/backend/cuda/sampling.h"

namespace ra::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarp = 32;
constexpr int kWarps = kThreads / kWarp;
static_assert(kWarps == kWarp, "block reductions reduce one value per warp in a single warp");
constexpr int kMaxVocab = 1 << 23;  // Σ q < 2^63 (q <= 2^40)
constexpr int kBinBits = 11;        // level digits: 11, 11, 10 bits of the key, from the top
constexpr int kBins = 1 << kBinBits;
constexpr int kLevels = 3;
constexpr int kSplitBits = 20;      // q = hi · 2^20 + lo, hi <= 2^20, lo < 2^20
constexpr unsigned kFull = 0xFFFFFFFFu;

// Key bits resolved at each level: 11 + 11 + 10 = 32.
__device__ __forceinline__ constexpr int level_bits(int level) { return level < kLevels - 1 ? kBinBits : 10; }

// ---- the shared definitions of sampler.h (keep identical to gpu_worker/decode/sampler.cpp) ----------

// q_i: floor(float(exp(double((l − m) / T))) · 2^40); 0 for NaN, −inf and weights below 2^-40.
__device__ __forceinline__ uint64_t fixed_weight(float logit, float max_logit, float temperature) {
  const float x = logit == max_logit ? 0.0f : __fdiv_rn(__fsub_rn(logit, max_logit), temperature);
  if (!(x > -CUDART_INF_F)) return 0;
  const float w = __double2float_rn(exp(static_cast<double>(x)));
  return __float2ull_rz(__fmul_rn(w, 0x1p40f));
}

// ceil(double(total) · top_p), clamped to [1, total].
__device__ __forceinline__ uint64_t top_p_need(uint64_t total, float top_p) {
  const double need = ceil(__dmul_rn(__ull2double_rn(total), static_cast<double>(top_p)));
  if (!(need >= 1.0)) return 1;
  if (need >= __ull2double_rn(total)) return total;
  return static_cast<uint64_t>(need);
}

// floor(kept · z / 2^24) with z = u · 2^24 < 2^24 (exact): < kept when kept > 0.
__device__ __forceinline__ uint64_t scaled_draw(uint64_t kept, float u) {
  const uint64_t z = __float2ull_rz(__fmul_rn(u, 0x1p24f));
  return (kept >> 24) * z + (((kept & 0xFFFFFFull) * z) >> 24);
}

// ---- keys ------------------------------------------------------------------------------------------

// Order-preserving 32-bit key of a non-NaN float; −0 maps to +0 so that the two zeros tie.
__device__ __forceinline__ uint32_t logit_key(float l) {
  const uint32_t b = __float_as_uint(l == 0.0f ? 0.0f : l);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float key_logit(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

// ---- shared state ------------------------------------------------------------------------------------

// Mass per bin = (hi_wraps · 2^32 + hi) · 2^20 + lo_wraps · 2^32 + lo, exact for vocab < 2^23.
struct Histogram {
  uint32_t lo[kBins];
  uint32_t lo_wraps[kBins];
  uint32_t hi[kBins];
  uint32_t hi_wraps[kBins];
};

struct Shared {
  Histogram hist;              // 32 KB
  uint64_t scan[kWarps];       // block reduction / scan scratch
  float best_value[kWarps];
  int best_index[kWarps];
  int boundary_bin;
  uint64_t boundary_above;     // mass in the bins above the boundary bin (this level)
  uint64_t boundary_mass;      // mass of the boundary bin
  int token;
};

__device__ __forceinline__ void add_wrapping(uint32_t* word, uint32_t* wraps, uint32_t v) {
  const uint32_t old = atomicAdd(word, v);
  if (old + v < old) atomicAdd(wraps, 1u);  // exactly the addition that carried out of 32 bits counts it
}

__device__ __forceinline__ void hist_add(Histogram& h, uint32_t bin, uint64_t q) {
  const uint32_t lo = static_cast<uint32_t>(q & ((1u << kSplitBits) - 1));
  const uint32_t hi = static_cast<uint32_t>(q >> kSplitBits);
  if (lo != 0) add_wrapping(&h.lo[bin], &h.lo_wraps[bin], lo);
  if (hi != 0) add_wrapping(&h.hi[bin], &h.hi_wraps[bin], hi);
}

__device__ __forceinline__ uint64_t hist_mass(const Histogram& h, int bin) {
  const uint64_t lo = (static_cast<uint64_t>(h.lo_wraps[bin]) << 32) | h.lo[bin];
  const uint64_t hi = (static_cast<uint64_t>(h.hi_wraps[bin]) << 32) | h.hi[bin];
  return (hi << kSplitBits) + lo;
}

__device__ void zero_histogram(Histogram& h) {
  for (int b = threadIdx.x; b < kBins; b += kThreads) {
    h.lo[b] = 0;
    h.lo_wraps[b] = 0;
    h.hi[b] = 0;
    h.hi_wraps[b] = 0;
  }
}

// ---- block reductions ----------------------------------------------------------------------------

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x) % kWarp; }
__device__ __forceinline__ int warp_id() { return static_cast<int>(threadIdx.x) / kWarp; }

__device__ __forceinline__ uint64_t warp_sum(uint64_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFull, v, offset);
  return v;
}

__device__ __forceinline__ uint64_t warp_inclusive_scan(uint64_t v) {
  const int lane = lane_id();
#pragma unroll
  for (int offset = 1; offset < kWarp; offset *= 2) {
    const uint64_t t = __shfl_up_sync(kFull, v, offset);
    if (lane >= offset) v += t;
  }
  return v;
}

// Σ v over the block, in every thread.
__device__ uint64_t block_sum(uint64_t v, Shared& sh) {
  v = warp_sum(v);
  if (lane_id() == 0) sh.scan[warp_id()] = v;
  __syncthreads();
  const uint64_t total = warp_sum(sh.scan[lane_id()]);
  __syncthreads();  // scan is reused
  return total;
}

// Σ of v over the threads before this one (thread order); *total = Σ over the block.
__device__ uint64_t block_exclusive_scan(uint64_t v, Shared& sh, uint64_t* total) {
  const uint64_t inclusive = warp_inclusive_scan(v);
  if (lane_id() == kWarp - 1) sh.scan[warp_id()] = inclusive;
  __syncthreads();
  const uint64_t w = sh.scan[lane_id()];
  const uint64_t w_inclusive = warp_inclusive_scan(w);
  const uint64_t before_warp = __shfl_sync(kFull, w_inclusive - w, warp_id());
  *total = __shfl_sync(kFull, w_inclusive, kWarp - 1);
  __syncthreads();  // scan is reused
  return before_warp + inclusive - v;
}

// The largest value, lowest index on ties; index −1 = none.
struct Best {
  float value;
  int index;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

__device__ __forceinline__ Best warp_best(Best v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = better(v, Best{__shfl_xor_sync(kFull, v.value, offset), __shfl_xor_sync(kFull, v.index, offset)});
  }
  return v;
}

__device__ Best block_best(Best v, Shared& sh) {
  v = warp_best(v);
  if (lane_id() == 0) {
    sh.best_value[warp_id()] = v.value;
    sh.best_index[warp_id()] = v.index;
  }
  __syncthreads();
  const Best total = warp_best(Best{sh.best_value[lane_id()], sh.best_index[lane_id()]});
  __syncthreads();
  return total;
}

// ---- passes --------------------------------------------------------------------------------------

__device__ __forceinline__ bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// f(i, logits[i]) for this thread's share of [0, vocab): 16-byte loads, four in flight, when aligned.
template <typename F>
__device__ __forceinline__ void for_each_logit(const float* logits, int vocab, F&& f) {
  int head = 0;
  if (aligned16(logits)) {
    const float4* p = reinterpret_cast<const float4*>(logits);
    const int n4 = vocab / 4;
    int j = static_cast<int>(threadIdx.x);
    for (; j + 3 * kThreads < n4; j += 4 * kThreads) {
      float4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = __ldg(p + j + u * kThreads);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = 4 * (j + u * kThreads);
        f(i, v[u].x);
        f(i + 1, v[u].y);
        f(i + 2, v[u].z);
        f(i + 3, v[u].w);
      }
    }
    for (; j < n4; j += kThreads) {
      const float4 v = __ldg(p + j);
      f(4 * j, v.x);
      f(4 * j + 1, v.y);
      f(4 * j + 2, v.z);
      f(4 * j + 3, v.w);
    }
    head = 4 * n4;
  }
  for (int i = head + static_cast<int>(threadIdx.x); i < vocab; i += kThreads) f(i, __ldg(logits + i));
}

// The boundary of one level: scanning the nbins bins from the top, the bin where the running mass first
// reaches need (>= 1, and <= the histogram's total). Leaves bin, mass above it and its own mass in sh.
__device__ void find_boundary(Shared& sh, int nbins, uint64_t need) {
  const int per_thread = nbins / kThreads;  // 2 or 1: thread t covers descending positions t·per_thread + k
  uint64_t mass[2] = {0, 0};
  uint64_t local = 0;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    if (k < per_thread) {
      mass[k] = hist_mass(sh.hist, nbins - 1 - (static_cast<int>(threadIdx.x) * per_thread + k));
      local += mass[k];
    }
  }
  if (threadIdx.x == 0) {  // defaults, overwritten below by the one thread that holds the crossing
    sh.boundary_bin = nbins - 1;
    sh.boundary_above = 0;
    sh.boundary_mass = 0;
  }
  uint64_t total;
  uint64_t running = block_exclusive_scan(local, sh, &total);
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    if (k < per_thread) {
      if (running < need && need <= running + mass[k]) {
        sh.boundary_bin = nbins - 1 - (static_cast<int>(threadIdx.x) * per_thread + k);
        sh.boundary_above = running;
        sh.boundary_mass = mass[k];
      }
      running += mass[k];
    }
  }
  __syncthreads();
}

// Top-p: λ (as a logit) and the kept mass Σ_{l >= λ} q. The level-0 histogram is already filled.
__device__ void nucleus(const float* logits, int vocab, float max_logit, float temperature, uint64_t total,
                        float top_p, Shared& sh, float* threshold, uint64_t* kept) {
  const uint64_t need = top_p_need(total, top_p);
  uint32_t prefix = 0;  // key bits chosen so far
  int consumed = 0;
  uint64_t above = 0;   // mass of the keys above the current prefix range
  for (int level = 0; level < kLevels; ++level) {
    const int bits = level_bits(level);
    const int shift = 32 - consumed - bits;
    if (level > 0) {
      zero_histogram(sh.hist);
      __syncthreads();
      for_each_logit(logits, vocab, [&](int, float l) {
        if (isnan(l)) return;
        const uint32_t key = logit_key(l);
        if ((key >> (32 - consumed)) != prefix) return;  // consumed is 11 or 22 here
        const uint64_t q = fixed_weight(l, max_logit, temperature);
        if (q != 0) hist_add(sh.hist, (key >> shift) & ((1u << bits) - 1), q);
      });
      __syncthreads();
    }
    find_boundary(sh, 1 << bits, need - above);
    prefix = (prefix << bits) | static_cast<uint32_t>(sh.boundary_bin);
    consumed += bits;
    above += sh.boundary_above;
    if (level == kLevels - 1) *kept = above + sh.boundary_mass;
  }
  *threshold = key_logit(prefix);
}

// The first index, in ascending order, whose running kept mass (logit >= threshold) exceeds r; −1 if none.
__device__ int walk(const float* logits, int vocab, float max_logit, float temperature, float threshold, uint64_t r,
                    Shared& sh) {
  const bool vector_loads = aligned16(logits);
  if (threadIdx.x == 0) sh.token = -1;  // ordered before the finder's write by the scan's barriers
  uint64_t running = 0;                 // kept mass of the tiles before this one
  for (int base = 0; base < vocab; base += 4 * kThreads) {
    const int i0 = base + 4 * static_cast<int>(threadIdx.x);
    float l[4];
    if (vector_loads && i0 + 3 < vocab) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(logits + i0));
      l[0] = v.x;
      l[1] = v.y;
      l[2] = v.z;
      l[3] = v.w;
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) l[k] = i0 + k < vocab ? __ldg(logits + i0 + k) : CUDART_NAN_F;
    }
    uint64_t q[4];
    uint64_t local = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      q[k] = l[k] >= threshold ? fixed_weight(l[k], max_logit, temperature) : 0;  // NaN is never kept
      local += q[k];
    }
    uint64_t tile_total;
    const uint64_t before = running + block_exclusive_scan(local, sh, &tile_total);
    const bool mine = before <= r && r < before + local;
    if (mine) {
      uint64_t c = before;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        c += q[k];
        if (c > r) {
          sh.token = i0 + k;
          break;
        }
      }
    }
    if (__syncthreads_or(mine)) break;
    running += tile_total;
  }
  return sh.token;  // read after the last barrier
}

__global__ void __launch_bounds__(kThreads, 1)
    sample_token_kernel(const float* __restrict__ logits, int vocab, const SamplingParams* __restrict__ params,
                        uint64_t* step, int32_t* out) {
  __shared__ Shared sh;
  const SamplingParams p = *params;
  const uint64_t draw_step = *step;  // read by every thread before the first barrier; written last

  Best best{0.0f, -1};
  for_each_logit(logits, vocab, [&](int i, float l) {
    if (!isnan(l)) best = better(best, Best{l, i});
  });
  best = block_best(best, sh);
  int token = best.index < 0 ? 0 : best.index;

  // temperature <= 0 or NaN is greedy here (the host rejects it); so is a max logit of −inf (all masked).
  if (p.temperature > 0.0f && best.index >= 0 && best.value > -CUDART_INF_F) {
    const float max_logit = best.value;
    const float temperature = p.temperature;
    const bool use_nucleus = p.top_p < 1.0f;  // NaN or >= 1: keep every token
    if (use_nucleus) {
      zero_histogram(sh.hist);
      __syncthreads();
    }
    uint64_t local = 0;
    for_each_logit(logits, vocab, [&](int, float l) {
      const uint64_t q = fixed_weight(l, max_logit, temperature);
      local += q;
      if (use_nucleus && q != 0) hist_add(sh.hist, logit_key(l) >> (32 - kBinBits), q);
    });
    const uint64_t total = block_sum(local, sh);  // its barriers also complete the histogram
    float threshold = -CUDART_INF_F;
    uint64_t kept = total;
    if (use_nucleus) nucleus(logits, vocab, max_logit, temperature, total, p.top_p, sh, &threshold, &kept);
    const uint64_t r = scaled_draw(kept, sample_uniform(p.seed, draw_step));
    const int drawn = walk(logits, vocab, max_logit, temperature, threshold, r, sh);
    if (drawn >= 0) token = drawn;  // always, since r < kept
  }
  if (threadIdx.x == 0) {
    *out = token;
    *step = draw_step + 1;
  }
}

}  // namespace

cudaError_t sample_token(const float* logits, int vocab, const SamplingParams* params, uint64_t* step, int32_t* out,
                         cudaStream_t stream) {
  if (vocab <= 0 || vocab >= kMaxVocab || logits == nullptr || params == nullptr || step == nullptr ||
      out == nullptr) {
    return cudaErrorInvalidValue;
  }
  sample_token_kernel<<<1, kThreads, 0, stream>>>(logits, vocab, params, step, out);
  return cudaGetLastError();
}

}  // namespace ra::cuda
