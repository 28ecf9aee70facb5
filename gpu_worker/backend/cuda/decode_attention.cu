// Split-K flash-decoding (contract and workspace layout in decode_attention.h). A split kernel writes
// one partial state (DESIGN §4) per (split, query head) to the workspace; the combine kernel merges a
// head's partials. Scores are kept in log2 units inside the kernels (q is pre-scaled by
// scale·log2(e), so exp2 replaces exp); every lse leaving a kernel is a natural log.

#include <math_constants.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "gpu_worker/backend/cuda/decode_attention.h"
#include "gpu_worker/backend/cuda/static_set.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "decode_attention.cu needs sm_80 or newer (bf16 mma.sync, movmatrix); the project builds sm_90"
#endif

namespace ra::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFullMask = 0xffffffffu;

// Shared by both split kernels. decode_attention_plan.cpp mirrors kTileKeys · kMinSplitTiles (its
// kMinSplitKeys) and the resident CTAs per SM that its split counts assume.
constexpr int kTileKeys = 16;          // keys per tile: the split granule, and the M of mma.m16n8k16
constexpr int kWarps = 4;              // warps per CTA
constexpr int kMinSplitTiles = kWarps; // a split never gets fewer tiles than warps (64 keys)
constexpr int kThreads = 32 * kWarps;

__device__ __forceinline__ float neg_inf() { return -CUDART_INF_F; }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, off));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(kFullMask, x, off);
  return x;
}

// Programmatic dependent launch: the split kernels let the combine kernel launch early; the combine
// waits here until the split grid has finished and its writes are visible. Both are no-ops when the
// launch did not use the attribute (and compiled out before sm_90, where plain stream order holds).
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Valid slots at this step, clamped to the cache so that a bad position never reads outside it.
__device__ __forceinline__ int64_t valid_count(const int64_t* position, int64_t sinks, int64_t window, int64_t cap) {
  const int64_t n = valid_slots(*position, sinks, window);
  return n < 0 ? 0 : (n > cap ? cap : n);
}

struct KeyRange {
  int64_t begin = 0;
  int64_t end = 0;  // exclusive; begin == end: empty
};

// Keys of split `split` (of `splits`) when n keys are valid. The ceil(n / 16) tiles go in contiguous,
// balanced runs (lengths differ by at most one tile) to as many splits as give each at least
// kMinSplitTiles tiles; the other splits are empty. begin is a multiple of 16, and only the split
// holding key n − 1 ends inside a tile.
__device__ __forceinline__ KeyRange split_keys(int64_t n, int split, int splits) {
  const int64_t tiles = (n + kTileKeys - 1) / kTileKeys;
  int64_t active = (tiles + kMinSplitTiles - 1) / kMinSplitTiles;  // ≤ tiles, so no active split is empty
  if (active > splits) active = splits;
  if (split >= active) return {};
  const int64_t t0 = split * tiles / active;
  const int64_t t1 = (split + 1) * tiles / active;
  const int64_t end = t1 * kTileKeys;
  return {t0 * kTileKeys, end < n ? end : n};
}

// ---------------------------------------------------------------------------------------------------
// Tensor-core split kernel: bf16 K/V, head_dim 64 or 128, ≤ 8 query heads per kv head.
//
// One CTA per (kv head, split); its 4 warps take the split's tiles round-robin (warp w: tiles w,
// w + 4, ...), each warp with its own 3-stage cp.async pipeline and its own online softmax, so the
// main loop has no CTA barrier. Per 16-key tile and warp:
//   S  (16 keys × 8 heads)  = K (16 × hd) · Qᵀ (hd × 8)   mma A = K tile (ldmatrix), B = q in registers
//   Oᵀ (hd × 8 heads)      += Vᵀ (hd × 16) · Pᵀ (16 × 8)  mma A = V tile (ldmatrix.trans), B = P
// P leaves the S accumulators as (key, head) 8×8 blocks; movmatrix.trans turns them into the B layout.
// Fragment notation below: r = lane / 4, c = lane % 4 (PTX's groupID and threadID_in_group).
namespace tc {

constexpr int kStages = 3;
constexpr int kHeadsPad = 8;  // the mma's N: the group's query heads, zero-padded

template <int HD>
struct Layout {
  static constexpr int kRowBytes = HD * 2;                   // one bf16 key or value row
  static constexpr int kChunks = HD / 8;                     // 16-byte chunks per row
  static constexpr int kTileBytes = kTileKeys * kRowBytes;   // K (or V) of one tile
  static constexpr int kStageBytes = 2 * kTileBytes;         // K tile, then V tile
  static constexpr int kWarpBytes = kStages * kStageBytes;   // one warp's pipeline
  static constexpr int kSmemBytes = kWarps * kWarpBytes;     // 96 KiB at hd 128: 2 CTAs per SM
  static constexpr int kSteps = HD / 16;                     // QK k-steps = PV m-tiles
  static_assert(kChunks >= 8, "the XOR swizzle permutes 8 chunks");
  static_assert(kHeadsPad * HD * 4 <= kWarpBytes, "the epilogue's o must fit in the warp's pipeline smem");
  static_assert(kTileKeys * kChunks % 32 == 0, "a tile is a whole number of warp-wide copies");
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global → shared; with valid == false nothing is read and 16 zero bytes are written.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&a)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&a)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(addr)
               : "memory");
}

// c (16×8 f32) += a (16×16 bf16, row) · b (16×8 bf16, col).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Transposes an 8×8 b16 matrix held one row pair per lane (lane holds row r, columns 2c, 2c+1).
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x) {
  uint32_t y;
  asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

__device__ __forceinline__ uint32_t as_u32(__nv_bfloat162 x) {
  uint32_t u;
  memcpy(&u, &x, sizeof(u));
  return u;
}

// {lo, hi} as bf16x2: lo in the low half (the lower-indexed fragment element).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) { return as_u32(__floats2bfloat162_rn(lo, hi)); }

// Byte offset of 16-byte chunk `chunk` of tile row `row`. Rows are 128 or 256 bytes, so without the
// XOR the 8 rows an ldmatrix phase reads would share 4 banks; with it they cover all 32.
template <int HD>
__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
  return static_cast<uint32_t>(row * Layout<HD>::kRowBytes + ((chunk ^ (row & 7)) << 4));
}

// Issues the copies of one tile (K and V rows [key0, key0 + 16)) into `stage`. Rows at or past `end`
// are zero-filled without a global read: slots past the valid range may hold anything (NaN).
template <int HD>
__device__ __forceinline__ void load_tile(uint32_t stage, const bfloat16* k_head, const bfloat16* v_head, int64_t key0,
                                          int64_t end, int lane) {
  using L = Layout<HD>;
  constexpr int kRowsPerCopy = 32 / L::kChunks;  // rows one warp-wide copy covers: 2 at hd 128, 4 at hd 64
  const bfloat16* k_tile = k_head + key0 * HD;   // the tile's 16 rows are contiguous in the cache
  const bfloat16* v_tile = v_head + key0 * HD;
  const int64_t left = end - key0;               // ≥ 1: every tile starts before end
  const int rows = left < kTileKeys ? static_cast<int>(left) : kTileKeys;
  const int chunk = lane % L::kChunks;  // consecutive lanes copy consecutive 16 bytes
#pragma unroll
  for (int i = 0; i < kTileKeys / kRowsPerCopy; ++i) {
    const int row = i * kRowsPerCopy + lane / L::kChunks;
    const bool valid = row < rows;
    const int src = valid ? row * HD + chunk * 8 : 0;  // a masked row still names a readable address (row 0)
    const uint32_t dst = stage + swizzle<HD>(row, chunk);
    cp_async_16(dst, k_tile + src, valid);
    cp_async_16(dst + L::kTileBytes, v_tile + src, valid);
  }
}

// q as the B operand of S = K·Qᵀ for k-step kk (dims 16kk .. 16kk + 15), head r of the group:
//   [kk][0] = {q[r][16kk + 2c], q[r][16kk + 2c + 1]},  [kk][1] = {q[r][16kk + 8 + 2c], ... + 1}.
// q (pre-scaled) is split into hi + lo bf16 parts, two mmas, so the scores keep ~16 bits of q rather
// than bf16's 8 (scores of magnitude 100 could otherwise be off by up to ~0.2). q_head null: a padding head.
template <int HD>
__device__ __forceinline__ void load_q(const float* q_head, float qscale, int lane, uint32_t (&hi)[HD / 16][2],
                                       uint32_t (&lo)[HD / 16][2]) {
  const int c = lane & 3;
  float2 xs[HD / 16][2];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) xs[kk][0] = xs[kk][1] = make_float2(0.f, 0.f);
  if (q_head != nullptr) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        xs[kk][half] = *reinterpret_cast<const float2*>(q_head + 16 * kk + 8 * half + 2 * c);
      }
    }
  }
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float2 x = xs[kk][half];
      x.x *= qscale;
      x.y *= qscale;
      const __nv_bfloat162 h = __floats2bfloat162_rn(x.x, x.y);
      const float2 hf = __bfloat1622float2(h);
      hi[kk][half] = as_u32(h);
      lo[kk][half] = pack_bf16(x.x - hf.x, x.y - hf.y);
    }
  }
}

// One lane's online-softmax state for heads 2c and 2c + 1 of the padded group (log2 units).
template <int HD>
struct WarpState {
  float acc[HD / 16][4];  // Oᵀ fragments: acc[mt] = {(d, 2c), (d, 2c+1), (d+8, 2c), (d+8, 2c+1)}, d = 16mt + r
  float m[2];             // running max of heads 2c, 2c+1; equal on the 8 lanes that share c
  float l[2];             // this lane's part of Σ exp2(s − m); summed over the 8 lanes at the end
};

// Folds one landed tile (keys [key0, key0 + 16), masked at `end`) into the warp's state.
template <int HD>
__device__ __forceinline__ void attend_tile(uint32_t stage, const uint32_t (&qhi)[HD / 16][2],
                                            const uint32_t (&qlo)[HD / 16][2], int64_t key0, int64_t end, int lane,
                                            WarpState<HD>& st) {
  using L = Layout<HD>;
  // S = K·Qᵀ. ldmatrix.x4 matrix j (addresses from lanes 8j .. 8j + 7) is A's register j:
  // keys 8·(j & 1) + 0..7, dims 16kk + 8·(j >> 1) + 0..7  →  row = lane & 15, chunk = 2kk + lane / 16.
  // hi and lo accumulate in separate chains so consecutive mmas do not wait on each other.
  float shi[4] = {0.f, 0.f, 0.f, 0.f};
  float slo[4] = {0.f, 0.f, 0.f, 0.f};
  const int k_row = lane & 15;
  const int k_chunk = lane >> 4;
#pragma unroll
  for (int kk = 0; kk < L::kSteps; ++kk) {
    uint32_t a[4];
    ldmatrix_x4(a, stage + swizzle<HD>(k_row, 2 * kk + k_chunk));
    mma_bf16(shi, a, qhi[kk][0], qhi[kk][1]);
    mma_bf16(slo, a, qlo[kk][0], qlo[kk][1]);
  }
  // s[0], s[1]: key r, heads 2c, 2c+1;  s[2], s[3]: key r + 8. Keys past `end` are masked (their K
  // rows were zero-filled, not read).
  const int r = lane >> 2;
  float s[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) s[i] = shi[i] + slo[i];
  if (key0 + r >= end) s[0] = s[1] = neg_inf();
  if (key0 + r + 8 >= end) s[2] = s[3] = neg_inf();

  // Tile max per head: the 16 keys of head 2c (+1) sit on the 8 lanes with this c (lane bits 2..4).
  float mx[2] = {fmaxf(s[0], s[2]), fmaxf(s[1], s[3])};
#pragma unroll
  for (int off = 4; off < 32; off <<= 1) {
    mx[0] = fmaxf(mx[0], __shfl_xor_sync(kFullMask, mx[0], off));
    mx[1] = fmaxf(mx[1], __shfl_xor_sync(kFullMask, mx[1], off));
  }
  float alpha[2], base[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const float m_new = fmaxf(st.m[j], mx[j]);
    base[j] = m_new == neg_inf() ? 0.f : m_new;  // never −inf − (−inf); key0 < end makes m_new finite anyway
    alpha[j] = exp2f(st.m[j] - base[j]);        // 0 on the first tile (m = −inf)
    st.m[j] = m_new;
  }
  const float p0 = exp2f(s[0] - base[0]);
  const float p1 = exp2f(s[1] - base[1]);
  const float p2 = exp2f(s[2] - base[0]);
  const float p3 = exp2f(s[3] - base[1]);
  st.l[0] = st.l[0] * alpha[0] + (p0 + p2);
  st.l[1] = st.l[1] * alpha[1] + (p1 + p3);
#pragma unroll
  for (int mt = 0; mt < L::kSteps; ++mt) {
    st.acc[mt][0] *= alpha[0];
    st.acc[mt][1] *= alpha[1];
    st.acc[mt][2] *= alpha[0];
    st.acc[mt][3] *= alpha[1];
  }
  // Pᵀ as B (16 keys × 8 heads): b0 must hold {P[key 2c][head r], P[key 2c+1][head r]}, which is the
  // transpose of what this lane holds ({P[key r][head 2c], P[key r][head 2c+1]}).
  const uint32_t b0 = movmatrix_trans(pack_bf16(p0, p1));  // keys 0..7
  const uint32_t b1 = movmatrix_trans(pack_bf16(p2, p3));  // keys 8..15
  // Oᵀ += Vᵀ·Pᵀ. With .trans, matrix j is read from V rows (keys) 8·(j >> 1) + 0..7, dims
  // 16mt + 8·(j & 1) + 0..7, and arrives as A's register j (dims × keys)  →  row = (lane & 7) +
  // 8·(lane / 16), chunk = 2mt + (lane / 8 & 1).
  const int v_row = (lane & 7) + ((lane >> 4) << 3);
  const int v_chunk = (lane >> 3) & 1;
#pragma unroll
  for (int mt = 0; mt < L::kSteps; ++mt) {
    uint32_t a[4];
    ldmatrix_x4_trans(a, stage + L::kTileBytes + swizzle<HD>(v_row, 2 * mt + v_chunk));
    mma_bf16(st.acc[mt], a, b0, b1);
  }
}

// Leaves the warp's unnormalised o ([kHeadsPad][HD] float32, in the warp's own pipeline smem) and its
// per-head m and l (reduced over lanes) for the CTA-wide combine.
template <int HD>
__device__ __forceinline__ void store_warp_state(WarpState<HD>& st, float* o_smem, float* m_smem, float* l_smem,
                                                 int lane) {
  const int r = lane >> 2;
  const int c = lane & 3;
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    st.l[j] += __shfl_xor_sync(kFullMask, st.l[j], 4);
    st.l[j] += __shfl_xor_sync(kFullMask, st.l[j], 8);
    st.l[j] += __shfl_xor_sync(kFullMask, st.l[j], 16);
  }
#pragma unroll
  for (int mt = 0; mt < Layout<HD>::kSteps; ++mt) {
    const int d = 16 * mt + r;
    o_smem[(2 * c) * HD + d] = st.acc[mt][0];
    o_smem[(2 * c + 1) * HD + d] = st.acc[mt][1];
    o_smem[(2 * c) * HD + d + 8] = st.acc[mt][2];
    o_smem[(2 * c + 1) * HD + d + 8] = st.acc[mt][3];
  }
  if (lane < 4) {  // r == 0, c == lane
    m_smem[2 * c] = st.m[0];
    m_smem[2 * c + 1] = st.m[1];
    l_smem[2 * c] = st.l[0];
    l_smem[2 * c + 1] = st.l[1];
  }
}

// Merges the warps' states into the split's partial: o_out = [group][HD] rows of the workspace,
// lse_out = [group]. A warp without tiles has m = −inf and is skipped (never 0 × its o).
template <int HD>
__device__ __forceinline__ void combine_warps(const unsigned char* smem, const float (&red_m)[kWarps][kHeadsPad],
                                              const float (&red_l)[kWarps][kHeadsPad], int group, float* o_out,
                                              float* lse_out) {
  for (int idx = threadIdx.x; idx < group * HD; idx += kThreads) {
    const int h = idx / HD;
    const int d = idx % HD;
    float m = neg_inf();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, red_m[w][h]);
    float l = 0.f, o = 0.f;  // m is finite: warp 0 always has a tile in a non-empty split, so l ≥ 1
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      if (red_m[w][h] == neg_inf()) continue;
      const float e = exp2f(red_m[w][h] - m);
      l += e * red_l[w][h];
      o += e * reinterpret_cast<const float*>(smem + w * Layout<HD>::kWarpBytes)[h * HD + d];
    }
    o_out[idx] = o / l;
    if (d == 0) lse_out[h] = (m + log2f(l)) * kLn2;
  }
}

template <int HD>
__global__ void __launch_bounds__(kThreads, 2)
    split_kernel(const float* __restrict__ q, const bfloat16* __restrict__ k_cache,
                 const bfloat16* __restrict__ v_cache, const int64_t* __restrict__ position, int64_t sinks,
                 int64_t window, float qscale, int n_heads, int group, int64_t cap, int splits,
                 float* __restrict__ ws_o, float* __restrict__ ws_lse) {
  using L = Layout<HD>;
  extern __shared__ __align__(128) unsigned char smem[];  // [kWarps][kStages][K tile, V tile]
  __shared__ float red_m[kWarps][kHeadsPad];
  __shared__ float red_l[kWarps][kHeadsPad];
  pdl_launch_dependents();

  const int kv = blockIdx.x;
  const int split = blockIdx.y;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int head0 = kv * group;  // the group's query heads are head0 .. head0 + group − 1
  const KeyRange range = split_keys(valid_count(position, sinks, window, cap), split, splits);
  const int64_t partial = static_cast<int64_t>(split) * n_heads + head0;  // row of (split, head0)
  if (range.begin == range.end) {  // the same for the whole CTA: an empty partial
    if (threadIdx.x < group) ws_lse[partial + threadIdx.x] = neg_inf();
    return;
  }

  const bfloat16* k_head = k_cache + static_cast<int64_t>(kv) * cap * HD;
  const bfloat16* v_head = v_cache + static_cast<int64_t>(kv) * cap * HD;
  // This warp's tiles start at `first`, every `stride` keys, while they start before range.end.
  constexpr int64_t stride = kWarps * kTileKeys;
  const int64_t first = range.begin + warp * kTileKeys;
  const int n_tiles = first < range.end ? static_cast<int>((range.end - first + stride - 1) / stride) : 0;
  const uint32_t pipe = smem_addr(smem) + warp * L::kWarpBytes;

  // Prologue: tiles 0 .. kStages − 2, one commit group each (empty groups keep the count uniform).
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < n_tiles) load_tile<HD>(pipe + i * L::kStageBytes, k_head, v_head, first + i * stride, range.end, lane);
    cp_async_commit();
  }
  const int r = lane >> 2;
  uint32_t qhi[L::kSteps][2], qlo[L::kSteps][2];
  load_q<HD>(r < group ? q + static_cast<int64_t>(head0 + r) * HD : nullptr, qscale, lane, qhi, qlo);

  WarpState<HD> st;
#pragma unroll
  for (int mt = 0; mt < L::kSteps; ++mt) st.acc[mt][0] = st.acc[mt][1] = st.acc[mt][2] = st.acc[mt][3] = 0.f;
  st.m[0] = st.m[1] = neg_inf();
  st.l[0] = st.l[1] = 0.f;

  for (int i = 0; i < n_tiles; ++i) {
    // Groups committed so far: kStages − 1 + i, tile j in group j. Allowing kStages − 2 pending
    // means groups 0..i are complete: tile i has landed for this lane; the warp barrier makes every
    // lane's copies visible, and tells that every lane has finished reading tile i − 1's stage.
    cp_async_wait<kStages - 2>();
    __syncwarp();
    const int next = i + kStages - 1;  // goes into the stage tile i − 1 used
    if (next < n_tiles) {
      load_tile<HD>(pipe + (next % kStages) * L::kStageBytes, k_head, v_head, first + next * stride, range.end, lane);
    }
    cp_async_commit();
    attend_tile<HD>(pipe + (i % kStages) * L::kStageBytes, qhi, qlo, first + i * stride, range.end, lane, st);
  }
  cp_async_wait<0>();  // only empty groups can remain; the pipeline smem is the warp's own again
  __syncwarp();

  store_warp_state<HD>(st, reinterpret_cast<float*>(smem + warp * L::kWarpBytes), red_m[warp], red_l[warp], lane);
  __syncthreads();
  combine_warps<HD>(smem, red_m, red_l, group, ws_o + partial * HD, ws_lse + partial);
}

}  // namespace tc

// ---------------------------------------------------------------------------------------------------
// Generic split kernel: any head_dim ≤ 256 (multiple of 8), any group, float or bf16 K/V. One CTA per
// (query head, split); warp w takes keys begin + w, begin + w + 4, ...; lane holds dims lane + 32i.
namespace generic {

constexpr int kMaxDimsPerLane = 8;  // head_dim ≤ 256

template <typename T>
__global__ void __launch_bounds__(kThreads)
    split_kernel(const float* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                 const int64_t* __restrict__ position, int64_t sinks, int64_t window, float qscale, int n_heads,
                 int group, int head_dim, int64_t cap, int splits, float* __restrict__ ws_o,
                 float* __restrict__ ws_lse) {
  __shared__ float red_o[kWarps][kMaxDimsPerLane * 32];
  __shared__ float red_m[kWarps];
  __shared__ float red_l[kWarps];
  pdl_launch_dependents();

  const int h = blockIdx.x;
  const int split = blockIdx.y;
  const int kv = h / group;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const KeyRange range = split_keys(valid_count(position, sinks, window, cap), split, splits);
  const int64_t partial = static_cast<int64_t>(split) * n_heads + h;
  if (range.begin == range.end) {
    if (threadIdx.x == 0) ws_lse[partial] = neg_inf();
    return;
  }

  float qv[kMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < head_dim ? q[static_cast<int64_t>(h) * head_dim + d] * qscale : 0.f;
  }
  const T* k_head = k_cache + static_cast<int64_t>(kv) * cap * head_dim;
  const T* v_head = v_cache + static_cast<int64_t>(kv) * cap * head_dim;
  float acc[kMaxDimsPerLane] = {};
  float m = neg_inf(), l = 0.f;
  for (int64_t j = range.begin + warp; j < range.end; j += kWarps) {
    const T* k_row = k_head + j * head_dim;
    const T* v_row = v_head + j * head_dim;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < head_dim) dot += qv[i] * to_float(k_row[d]);
    }
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot);    // finite: dot is
    const float alpha = exp2f(m - m_new);  // 0 on the first key
    const float p = exp2f(dot - m_new);
    l = l * alpha + p;
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < head_dim) acc[i] = acc[i] * alpha + p * to_float(v_row[d]);
    }
    m = m_new;
  }
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < head_dim) red_o[warp][d] = acc[i];
  }
  if (lane == 0) {
    red_m[warp] = m;
    red_l[warp] = l;
  }
  __syncthreads();
  // Merge the warps (a warp without keys has m = −inf and is skipped); warp 0 always has a key.
  float m_all = neg_inf();
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, red_m[w]);
  for (int d = threadIdx.x; d < head_dim; d += kThreads) {
    float l_all = 0.f, o = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      if (red_m[w] == neg_inf()) continue;
      const float e = exp2f(red_m[w] - m_all);
      l_all += e * red_l[w];
      o += e * red_o[w][d];
    }
    ws_o[partial * head_dim + d] = o / l_all;
    if (d == 0) ws_lse[partial] = (m_all + log2f(l_all)) * kLn2;
  }
}

}  // namespace generic

// ---------------------------------------------------------------------------------------------------
// Combine: one CTA per query head, one thread per dim. lse = logaddexp of the splits' lse and
// o = Σ_s exp(lse_s − lse) o_s over splits with a finite lse; an empty split's o is never read (it
// was not written). All splits empty: lse = −inf, o = 0.
__global__ void __launch_bounds__(256)
    combine_kernel(const float* __restrict__ ws_o, const float* __restrict__ ws_lse, int n_heads, int head_dim,
                   int splits, float* __restrict__ o, float* __restrict__ lse) {
  __shared__ float weight[kDecodeAttentionMaxSplits];  // exp(lse_s − lse), 0 for empty splits
  __shared__ float lse_head;
  pdl_wait();  // everything below reads the split kernel's output

  const int h = blockIdx.x;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float m = neg_inf();
    for (int s = lane; s < splits; s += 32) m = fmaxf(m, ws_lse[static_cast<int64_t>(s) * n_heads + h]);
    m = warp_max(m);
    float sum = 0.f;
    for (int s = lane; s < splits; s += 32) {
      const float ls = ws_lse[static_cast<int64_t>(s) * n_heads + h];
      const float e = ls == neg_inf() ? 0.f : expf(ls - m);  // ls finite ⇒ m finite
      weight[s] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    const bool empty = m == neg_inf();
    const float inv = empty ? 0.f : 1.f / sum;  // sum ≥ 1 when not empty (the max split gives 1)
    for (int s = lane; s < splits; s += 32) weight[s] *= inv;  // this lane's own entries
    if (lane == 0) lse_head = empty ? neg_inf() : m + logf(sum);
  }
  __syncthreads();
  const int d = threadIdx.x;
  if (d < head_dim) {
    // kBatch loads in flight per thread (the partials sit in L2), instead of one round trip per split.
    constexpr int kBatch = 16;
    const float* column = ws_o + static_cast<int64_t>(h) * head_dim + d;  // split s: column[s·n_heads·head_dim]
    const int64_t split_stride = static_cast<int64_t>(n_heads) * head_dim;
    float acc = 0.f;
    for (int s0 = 0; s0 < splits; s0 += kBatch) {
      float x[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int s = s0 + i;
        const bool used = s < splits && weight[s] != 0.f;  // an empty split's o is never read
        x[i] = used ? column[s * split_stride] : 0.f;
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        if (s0 + i < splits) acc += weight[s0 + i] * x[i];  // weight 0 meets x = 0, never garbage
      }
    }
    o[static_cast<int64_t>(h) * head_dim + d] = acc;
  }
  if (threadIdx.x == 0) lse[h] = lse_head;
}

// ---------------------------------------------------------------------------------------------------
// Launchers.

struct Run {
  const float* q;
  const int64_t* position;
  int64_t sinks;
  int64_t window;
  float qscale;   // scale · log2(e)
  float* ws_o;    // [max_splits][n_heads][head_dim]
  float* ws_lse;  // [max_splits][n_heads]
};

template <int HD>
cudaError_t launch_tensor_core(const DecodeAttentionPlan& p, const Run& run, const bfloat16* k, const bfloat16* v,
                               cudaStream_t stream) {
  using L = tc::Layout<HD>;
  const auto kernel = tc::split_kernel<HD>;
  // Not stream operations: allowed while a graph is being captured.
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kSmemBytes);
  if (err == cudaSuccess) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  }
  if (err != cudaSuccess) return err;
  kernel<<<dim3(p.n_kv_heads, p.max_splits), kThreads, L::kSmemBytes, stream>>>(
      run.q, k, v, run.position, run.sinks, run.window, run.qscale, p.n_heads, p.group, p.kv_capacity, p.max_splits,
      run.ws_o, run.ws_lse);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_generic(const DecodeAttentionPlan& p, const Run& run, const T* k, const T* v, cudaStream_t stream) {
  generic::split_kernel<T><<<dim3(p.n_heads, p.max_splits), kThreads, 0, stream>>>(
      run.q, k, v, run.position, run.sinks, run.window, run.qscale, p.n_heads, p.group, p.head_dim, p.kv_capacity,
      p.max_splits, run.ws_o, run.ws_lse);
  return cudaGetLastError();
}

// RA_DECODE_ATTENTION_NO_PDL set in the environment: launch the combine in plain stream order.
bool pdl_disabled() {
  static const bool disabled = std::getenv("RA_DECODE_ATTENTION_NO_PDL") != nullptr;
  return disabled;
}

// Programmatic dependent launch on created streams; the legacy and per-thread default streams keep
// plain stream order.
cudaError_t launch_combine(const DecodeAttentionPlan& p, const Run& run, float* o, float* lse, cudaStream_t stream) {
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  const bool pdl =
      !pdl_disabled() && stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(p.n_heads));
  cfg.blockDim = dim3(static_cast<unsigned>((p.head_dim + 31) / 32 * 32));
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  const float* ws_o = run.ws_o;
  const float* ws_lse = run.ws_lse;
  const cudaError_t err =
      cudaLaunchKernelEx(&cfg, combine_kernel, ws_o, ws_lse, p.n_heads, p.head_dim, p.max_splits, o, lse);
  return err != cudaSuccess ? err : cudaGetLastError();
}

// The plan came from plan_decode_attention for this T (the launcher trusts its kernel choice only
// after these checks).
template <typename T>
bool plan_fits(const DecodeAttentionPlan& p) {
  const bool shape = p.n_heads > 0 && p.n_kv_heads > 0 && p.group * p.n_kv_heads == p.n_heads && p.head_dim >= 8 &&
                     p.head_dim <= 256 && p.head_dim % 8 == 0 && p.kv_capacity > 0 && p.max_splits >= 1 &&
                     p.max_splits <= kDecodeAttentionMaxSplits && p.kv_dtype == dtype_of<T>();
  if (!shape) return false;
  if (p.kernel == DecodeAttentionKernel::kGeneric) return true;
  return std::is_same_v<T, bfloat16> && (p.head_dim == 64 || p.head_dim == 128) && p.group <= tc::kHeadsPad;
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

template <typename T>
cudaError_t decode_attention(const DecodeAttentionPlan& plan, const float* q, const T* k_cache, const T* v_cache,
                             const int64_t* position, int64_t sinks, int64_t window, float scale, float* o,
                             float* lse, void* workspace, cudaStream_t stream) {
  if (!plan_fits<T>(plan) || q == nullptr || k_cache == nullptr || v_cache == nullptr || position == nullptr ||
      o == nullptr || lse == nullptr || workspace == nullptr || sinks < 0 || window < 0 ||
      (window > 0 && sinks + window > plan.kv_capacity)) {
    return cudaErrorInvalidValue;
  }
  Run run{q,
          position,
          sinks,
          window,
          scale * kLog2e,
          static_cast<float*>(workspace),
          reinterpret_cast<float*>(static_cast<char*>(workspace) + plan.lse_offset)};
  cudaError_t err = cudaSuccess;
  if constexpr (std::is_same_v<T, bfloat16>) {
    if (plan.kernel == DecodeAttentionKernel::kTensorCore) {
      if (!aligned(k_cache, 16) || !aligned(v_cache, 16) || !aligned(q, 8)) return cudaErrorMisalignedAddress;
      err = plan.head_dim == 128 ? launch_tensor_core<128>(plan, run, k_cache, v_cache, stream)
                                 : launch_tensor_core<64>(plan, run, k_cache, v_cache, stream);
    } else {
      err = launch_generic<T>(plan, run, k_cache, v_cache, stream);
    }
  } else {
    err = launch_generic<T>(plan, run, k_cache, v_cache, stream);
  }
  if (err != cudaSuccess) return err;
  return launch_combine(plan, run, o, lse, stream);
}

template cudaError_t decode_attention<float>(const DecodeAttentionPlan&, const float*, const float*, const float*,
                                             const int64_t*, int64_t, int64_t, float, float*, float*, void*,
                                             cudaStream_t);
template cudaError_t decode_attention<bfloat16>(const DecodeAttentionPlan&, const float*, const bfloat16*,
                                                const bfloat16*, const int64_t*, int64_t, int64_t, float, float*,
                                                float*, void*, cudaStream_t);

}  // namespace ra::cuda
