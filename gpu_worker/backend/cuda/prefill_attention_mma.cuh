#pragma once
// Internal to prefill_attention.cu: the tensor-core causal prefill kernel (bf16, head_dim 64 or 128),
// a FlashAttention-2 style forward pass on mma.sync.m16n8k16 (sm_80+; built for sm_90).
//
// One block = one query head x kBlockM = 128 consecutive queries; each warp owns 16 (8 warps) or 32
// (4 warps) query rows, see Config.
//   - Q tile -> shared (cp.async) -> A fragments (ldmatrix), held in registers where they fit.
//   - K/V tiles of kBlockN (64, or 32) keys stream through a kStages-deep cp.async ring in shared memory;
//     tile j + kStages - 1 loads while tile j is computed; one __syncthreads per tile.
//   - Per tile and warp: S = Q K^T (fp32 in registers), causal mask (only on tiles that cross the
//     diagonal; tiles wholly in the warp's future are skipped), online softmax in base 2, P
//     rounded to bf16 straight from the S accumulators into A fragments, O += P V (fp32 registers).
//   - Shared tiles are [rows][head_dim] bf16 with 16-byte chunks XOR-swizzled by (row % 8), so the
//     eight rows an 8x8 ldmatrix reads (plain for Q and K, .trans for V) hit eight distinct bank
//     groups; cp.async writes and ldmatrix reads both go through swizzle() below.
//   - The output is normalised by the row sum, staged as bf16 in the warp's own rows of the Q tile,
//     and written with 16-byte coalesced stores.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4,
// t = lane % 4; each 32-bit register holds two bf16, the lower column (or k) in the low half:
//   A 16x16 row-major: a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
//   B 16x8 (k x n):    b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8..2t+9, n g)
//   C 16x8 fp32:       c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of matrix i; register i of every lane then holds
// (row lane/4, columns 2(lane%4)..+1) of matrix i (with .trans: (rows 2(lane%4)..+1, column lane/4)).

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <cstring>

namespace ra::cuda::prefill_mma {

using bf16 = __nv_bfloat16;

// ---------------------------------------------------------------------------------------------
// PTX primitives

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1. With valid == false nothing is read (src-size 0) and the
// 16 destination bytes are zero-filled.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// d += a · b for one 16x8x16 tile (bf16 inputs, fp32 accumulators; d is both C and D).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> one register of two bf16 (round to nearest even), lo in the low 16 bits.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo is the low half
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

// 2^x on the SFU (relative error ~2^-22; exp2(-inf) = +0, results below 2^-126 flush to 0, which is
// harmless for softmax weights in [0, 1]).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---------------------------------------------------------------------------------------------
// Tiling

// kRowTiles: m16 row tiles per warp. 1: 16 query rows per warp, 8 warps, Q fragments held in
// registers. 2: 32 rows per warp, 4 warps; each K/V fragment loaded from shared memory feeds two
// MMAs, halving the ldmatrix traffic per MMA (shared-memory bandwidth, not the tensor cores, bounds
// the 16-row layout); at head_dim 128 the Q fragments no longer fit in registers beside O and S, so
// they are re-read from sQ for every tile.
template <int kHeadDim, int kRowTiles>
struct Config {
  static_assert(kHeadDim == 64 || kHeadDim == 128, "the tensor-core kernel takes head_dim 64 or 128");
  static_assert(kRowTiles == 1 || kRowTiles == 2, "16 or 32 query rows per warp");
  static constexpr int kBlockM = 128;  // queries per block
  // Keys per K/V tile: 64, except 32 for 32 rows at hd 128, where the 64-key S accumulators (64
  // registers) on top of O (128) would spill.
  static constexpr int kBlockN = (kRowTiles == 2 && kHeadDim == 128) ? 32 : 64;
  static constexpr int kRowsPerWarp = 16 * kRowTiles;
  static constexpr int kWarps = kBlockM / kRowsPerWarp;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr bool kQInRegisters = kRowTiles == 1 || kHeadDim == 64;
  // K/V ring depth: tile j + 2 loads while tile j is computed. Every layout has the shared memory
  // for 3 stages at its blocks per SM (below).
  static constexpr int kStages = 3;
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row; >= 8 so the swizzle stays in-row
  // Registers: 16 rows at hd 128 need ~230 per thread, so 1 block of 8 warps per SM; every other
  // layout runs 2 blocks per SM (hd 64 / 16 rows: <= 128 registers; 32 rows: <= 255 with 4 warps).
  static constexpr int kMinBlocksPerSm = (kRowTiles == 1 && kHeadDim == 128) ? 1 : 2;
  static constexpr int kQElems = kBlockM * kHeadDim;     // sQ: [kBlockM][kHeadDim]
  static constexpr int kTileElems = kBlockN * kHeadDim;  // one K or V stage: [kBlockN][kHeadDim]
  // 16 rows: hd 128: 32 KiB (Q) + 3 x 2 x 16 KiB (K, V) = 128 KiB (1 block per SM); hd 64: 64 KiB (2).
  // 32 rows: hd 128: 32 KiB + 3 x 2 x 8 KiB = 80 KiB (2 blocks per SM); hd 64: 64 KiB (2).
  static constexpr size_t kSmemBytes = sizeof(bf16) * (kQElems + 2 * kStages * kTileElems);
};

struct Params {
  const bf16* q;        // [n][n_heads][head_dim]
  const bf16* k;        // [n_kv_heads][kv_capacity][head_dim]
  const bf16* v;        // [n_kv_heads][kv_capacity][head_dim]
  bf16* o;              // [n][n_heads][head_dim]
  int64_t kv_capacity;  // slots per kv head
  int pos0;             // position of query 0; pos0 + n <= 2^30 (the dispatcher checks)
  int n;                // queries in the chunk
  int n_heads;          // query heads
  int group;            // n_heads / n_kv_heads
  float scale_log2;     // scale * log2(e) > 0: scores in base-2 units
};

// Element offset of (row, 16-byte chunk) in a swizzled [rows][kHeadDim] bf16 tile: the chunk index is
// XORed with row % 8 (within the row: kHeadDim / 8 >= 8 chunks). Every write and read of sQ, sK, sV
// goes through here.
template <int kHeadDim>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}

// cp.async of a [kRows][kHeadDim] tile into swizzled shared memory. Row r comes from
// src + r * src_stride; rows >= valid_rows are zero-filled and their global memory is not read
// (valid_rows >= 1, so src itself is always a readable address).
template <int kHeadDim, int kRows, int kThreads>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* __restrict__ src, int64_t src_stride, int valid_rows,
                                          int tid) {
  constexpr int kChunks = kHeadDim / 8;
  static_assert((kRows * kChunks) % kThreads == 0, "whole chunks per thread");
#pragma unroll
  for (int i = 0; i < kRows * kChunks / kThreads; ++i) {
    const int idx = tid + i * kThreads;  // consecutive threads take consecutive chunks of a row
    const int row = idx / kChunks;
    const int chunk = idx % kChunks;
    const bool valid = row < valid_rows;
    const bf16* g = src + (valid ? row * src_stride : 0) + chunk * 8;
    cp_async_16(smem_addr(dst + swizzle<kHeadDim>(row, chunk)), g, valid);
  }
}

// A fragment of Q (16 rows from row0 of sQ x the 16 dims of slice kk): matrix 0 = rows +0..7 dims
// +0..7, 1 = rows +8..15 dims +0..7, 2 = rows +0..7 dims +8..15, 3 = rows +8..15 dims +8..15, which
// are a[0..3] of the A layout.
template <int kHeadDim>
__device__ __forceinline__ void load_q_fragment(uint32_t (&a)[4], const bf16* sQ, int row0, int kk, int lane) {
  ldmatrix_x4(a, smem_addr(sQ + swizzle<kHeadDim>(row0 + (lane & 15), 2 * kk + (lane >> 4))));
}

// The warp's Q operand: A fragments [row tile][16-dim slice], held in registers when they fit (the
// ldmatrix happens once), otherwise read from sQ at each use.
template <int kHeadDim, int kRowTiles, bool kInRegisters>
struct QOperand;

template <int kHeadDim, int kRowTiles>
struct QOperand<kHeadDim, kRowTiles, true> {
  uint32_t frag[kRowTiles][kHeadDim / 16][4];
  __device__ __forceinline__ void init(const bf16* sQ, int row0, int lane) {
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
      for (int kk = 0; kk < kHeadDim / 16; ++kk) load_q_fragment<kHeadDim>(frag[rt][kk], sQ, row0 + 16 * rt, kk, lane);
    }
  }
  __device__ __forceinline__ void get(uint32_t (&a)[4], const bf16*, int, int rt, int kk, int) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = frag[rt][kk][i];
  }
};

template <int kHeadDim, int kRowTiles>
struct QOperand<kHeadDim, kRowTiles, false> {
  __device__ __forceinline__ void init(const bf16*, int, int) {}
  __device__ __forceinline__ void get(uint32_t (&a)[4], const bf16* sQ, int row0, int rt, int kk, int lane) const {
    load_q_fragment<kHeadDim>(a, sQ, row0 + 16 * rt, kk, lane);
  }
};

// S (kRowTiles x 16 rows x kBlockN keys, this warp's rows) = Q K^T for one K tile. sK:
// [kBlockN][kHeadDim] swizzled; sQ and row0 (the warp's first row in the block) serve Q operands
// that live in shared memory.
template <int kHeadDim, int kBlockN, int kRowTiles, typename Q>
__device__ __forceinline__ void qk_tile(float (&s)[kRowTiles][kBlockN / 8][4], const Q& q, const bf16* sQ, int row0,
                                        const bf16* sK, int lane) {
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt) s[rt][nt][0] = s[rt][nt][1] = s[rt][nt][2] = s[rt][nt][3] = 0.0f;
  }
  // One ldmatrix.x4 gives the B fragments of two 8-key n-tiles for one 16-dim k-slice:
  // matrix 0 = keys +0..7 dims +0..7 (b0 of n-tile 2np), 1 = keys +0..7 dims +8..15 (b1 of 2np),
  // 2 = keys +8..15 dims +0..7 (b0 of 2np+1), 3 = keys +8..15 dims +8..15 (b1 of 2np+1).
  // K is stored [key][dim], i.e. already B's "col" (n-major) layout, so no .trans.
  const int key_in_pair = (lane & 7) + ((lane >> 4) << 3);
  const int chunk_half = (lane >> 3) & 1;
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    uint32_t a[kRowTiles][4];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) q.get(a[rt], sQ, row0, rt, kk, lane);
#pragma unroll
    for (int np = 0; np < kBlockN / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, smem_addr(sK + swizzle<kHeadDim>(np * 16 + key_in_pair, 2 * kk + chunk_half)));
#pragma unroll
      for (int rt = 0; rt < kRowTiles; ++rt) {
        mma_bf16_16816(s[rt][2 * np], a[rt], b[0], b[1]);
        mma_bf16_16816(s[rt][2 * np + 1], a[rt], b[2], b[3]);
      }
    }
  }
}

// O (kRowTiles x 16 rows x kHeadDim, this warp's rows) += P V for one V tile. p: softmax weights in
// the S accumulator layout. sV: [kBlockN][kHeadDim] swizzled.
template <int kHeadDim, int kBlockN, int kRowTiles>
__device__ __forceinline__ void pv_tile(float (&o)[kRowTiles][kHeadDim / 8][4],
                                        const float (&p)[kRowTiles][kBlockN / 8][4], const bf16* sV, int lane) {
  // One ldmatrix.x4.trans gives the B fragments of two 8-dim n-tiles for one 16-key k-slice:
  // matrix 0 = keys +0..7 dims +0..7 (b0 of d-tile 2dp), 1 = keys +8..15 dims +0..7 (b1 of 2dp),
  // 2 = keys +0..7 dims +8..15 (b0 of 2dp+1), 3 = keys +8..15 dims +8..15 (b1 of 2dp+1).
  const int key_in_slice = (lane & 7) + (((lane >> 3) & 1) << 3);
  const int chunk_half = lane >> 4;
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    // A fragment of P for keys [16 kk, 16 kk + 16): the C fragments of S n-tiles 2kk and 2kk+1 hold
    // exactly the (row, key) pairs A needs: a0 = (g, 2t..) and a1 = (g+8, 2t..) from n-tile 2kk,
    // a2 = (g, 8+2t..) and a3 = (g+8, 8+2t..) from n-tile 2kk+1.
    uint32_t a[kRowTiles][4];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
      a[rt][0] = pack_bf16x2(p[rt][2 * kk][0], p[rt][2 * kk][1]);
      a[rt][1] = pack_bf16x2(p[rt][2 * kk][2], p[rt][2 * kk][3]);
      a[rt][2] = pack_bf16x2(p[rt][2 * kk + 1][0], p[rt][2 * kk + 1][1]);
      a[rt][3] = pack_bf16x2(p[rt][2 * kk + 1][2], p[rt][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < kHeadDim / 16; ++dp) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, smem_addr(sV + swizzle<kHeadDim>(kk * 16 + key_in_slice, 2 * dp + chunk_half)));
#pragma unroll
      for (int rt = 0; rt < kRowTiles; ++rt) {
        mma_bf16_16816(o[rt][2 * dp], a[rt], b[0], b[1]);
        mma_bf16_16816(o[rt][2 * dp + 1], a[rt], b[2], b[3]);
      }
    }
  }
}

// Sets to −inf the raw scores (one row tile) of keys later than the row's position. key0: the tile's
// first slot; pos_lo / pos_hi: positions of the thread's rows g and g+8 (rows past the chunk clamped
// to the last query, so they never see slots >= pos0 + n either).
template <int kBlockN>
__device__ __forceinline__ void causal_mask(float (&s)[kBlockN / 8][4], int key0, int pos_lo, int pos_hi, int lane) {
  // Column c of the tile (slot key0 + c) is visible to a row iff c <= pos - key0 (no overflow: all
  // values are in [0, pos0 + n]).
  const int lim_lo = pos_lo - key0;
  const int lim_hi = pos_hi - key0;
#pragma unroll
  for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int c = nt * 8 + 2 * (lane & 3) + e;
      if (c > lim_lo) s[nt][e] = -CUDART_INF_F;
      if (c > lim_hi) s[nt][2 + e] = -CUDART_INF_F;
    }
  }
}

// Online softmax step for one row tile, the thread's two rows (g: index 0, g+8: index 1). s holds
// the raw scores q·k (−inf where masked) on entry and the unnormalised weights
// exp2(s · scale_log2 − m_new) on exit; m_run is the running max in base-2 units (scale_log2 > 0, so
// max(s) · scale_log2 is the max of the scaled scores). The row max is shared by the quad of lanes
// that own the row; the row sum stays per-thread (summed over the quad at the end). o and the running
// sum are rescaled by exp2(m_old − m_new).
template <int kHeadDim, int kBlockN>
__device__ __forceinline__ void online_softmax(float (&s)[kBlockN / 8][4], float (&o)[kHeadDim / 8][4],
                                               float (&m_run)[2], float (&l_run)[2], float scale_log2) {
  float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
#pragma unroll
  for (int nt = 0; nt < kBlockN / 8; ++nt) {
    mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
  }
  float alpha[2];
  float base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));  // the quad = lanes 4g..4g+3
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float m_new = fmaxf(m_run[r], mx[r] * scale_log2);  // −inf · scale_log2 = −inf
    // A row with nothing visible yet keeps m = −inf; subtracting 0 then gives exp2(−inf) = 0, not NaN.
    base[r] = m_new == -CUDART_INF_F ? 0.0f : m_new;
    alpha[r] = exp2_approx(m_run[r] - base[r]);  // 0 when m_run = −inf; exactly 1 when the max stays
    m_run[r] = m_new;
  }
  float sum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[nt][e] = exp2_approx(fmaf(s[nt][e], scale_log2, -base[e >> 1]));
      sum[e >> 1] += s[nt][e];
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) l_run[r] = l_run[r] * alpha[r] + sum[r];
  // Past the first tiles the row max rarely moves: skip the multiplications by 1 (the result is the
  // same bit for bit), deciding per warp so the branch does not diverge.
  if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }
  }
}

// Normalises one row tile of the warp (16 rows from block row `row0`), stages it as bf16 in the same
// rows of sQ (only this warp ever reads them: its Q operand), and writes the rows < n with 16-byte
// stores. Every lane of the warp calls it.
template <int kHeadDim>
__device__ __forceinline__ void store_output(const float (&o)[kHeadDim / 8][4], const float (&l_run)[2], bf16* sQ,
                                             const Params& p, int m0, int row0, int h, int lane) {
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.0f ? 1.0f / l : 0.0f;  // l >= 1 for every row (its max key gives exp2(0))
  }
  const int row_lo = row0 + (lane >> 2);  // block-local rows g and g+8
  const int col = 2 * (lane & 3);
  __syncwarp();  // the warp's last reads of these sQ rows (Q operand) are done before they are overwritten
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) {
    *reinterpret_cast<uint32_t*>(sQ + swizzle<kHeadDim>(row_lo, dt) + col) =
        pack_bf16x2(o[dt][0] * inv[0], o[dt][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(sQ + swizzle<kHeadDim>(row_lo + 8, dt) + col) =
        pack_bf16x2(o[dt][2] * inv[1], o[dt][3] * inv[1]);
  }
  __syncwarp();  // the staged rows are visible to the whole warp
  constexpr int kChunks = kHeadDim / 8;
#pragma unroll
  for (int i = 0; i < 16 * kChunks / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = idx / kChunks;
    const int chunk = idx % kChunks;
    const int query = m0 + row0 + r;
    if (query < p.n) {
      const uint4 val = *reinterpret_cast<const uint4*>(sQ + swizzle<kHeadDim>(row0 + r, chunk));
      *reinterpret_cast<uint4*>(p.o + (static_cast<int64_t>(query) * p.n_heads + h) * kHeadDim + chunk * 8) = val;
    }
  }
}

// Grid: (n_heads, ceil(n / kBlockM)); block: Config::kThreads; dynamic shared memory:
// Config::kSmemBytes.
template <int kHeadDim, int kRowTiles>
__global__ void __launch_bounds__(Config<kHeadDim, kRowTiles>::kThreads, Config<kHeadDim, kRowTiles>::kMinBlocksPerSm)
    prefill_attention_mma_kernel(const Params p) {
  using C = Config<kHeadDim, kRowTiles>;
  constexpr int kBlockM = C::kBlockM;
  constexpr int kBlockN = C::kBlockN;
  constexpr int kStages = C::kStages;
  static_assert(kStages >= 2, "the ring needs a tile in flight while one is computed");

  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // [kBlockM][kHeadDim], swizzled
  bf16* sK = sQ + C::kQElems;                // [kStages][kBlockN][kHeadDim], swizzled
  bf16* sV = sK + kStages * C::kTileElems;   // [kStages][kBlockN][kHeadDim], swizzled

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int h = blockIdx.x;
  // The last query tiles see the most keys: launch them first so the short ones fill the tail.
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kBlockM;
  const int rows = min(kBlockM, p.n - m0);  // valid queries in the tile, >= 1
  const int kv_end = p.pos0 + m0 + rows;    // slots [0, kv_end) are seen by some row of the block
  const int n_tiles = (kv_end + kBlockN - 1) / kBlockN;
  const int64_t kv_offset = static_cast<int64_t>(h / p.group) * p.kv_capacity * kHeadDim;
  const bf16* k_head = p.k + kv_offset;  // [kv_capacity][kHeadDim]
  const bf16* v_head = p.v + kv_offset;  // [kv_capacity][kHeadDim]

  // K and V tile j -> ring stage `stage`; slots >= kv_end are zero-filled, never read.
  auto load_kv = [&](int j, int stage) {
    const int key0 = j * kBlockN;
    const int valid = min(kBlockN, kv_end - key0);
    const int64_t offset = static_cast<int64_t>(key0) * kHeadDim;
    load_tile<kHeadDim, kBlockN, C::kThreads>(sK + stage * C::kTileElems, k_head + offset, kHeadDim, valid, tid);
    load_tile<kHeadDim, kBlockN, C::kThreads>(sV + stage * C::kTileElems, v_head + offset, kHeadDim, valid, tid);
  };

  // cp.async groups, in commit order: Q, then one per K/V tile (empty past the last tile, so that
  // "tile j has landed" is always "at most kStages − 2 groups pending" at iteration j).
  load_tile<kHeadDim, kBlockM, C::kThreads>(sQ, p.q + (static_cast<int64_t>(m0) * p.n_heads + h) * kHeadDim,
                                            static_cast<int64_t>(p.n_heads) * kHeadDim, rows, tid);
  cp_async_commit();
#pragma unroll
  for (int j = 0; j < kStages - 1; ++j) {
    if (j < n_tiles) load_kv(j, j);
    cp_async_commit();
  }

  const int row0 = warp * C::kRowsPerWarp;  // the warp's first row in the block
  cp_async_wait<kStages - 1>();             // the Q group, the oldest, has landed (this thread's part)
  __syncthreads();                          // ... and every thread's part
  QOperand<kHeadDim, kRowTiles, C::kQInRegisters> q_operand;
  q_operand.init(sQ, row0, lane);

  float o[kRowTiles][kHeadDim / 8][4];  // O accumulators: per row tile 16 rows x kHeadDim, C layout
  float m_run[kRowTiles][2];            // running max (base 2) of the thread's rows g, g+8
  float l_run[kRowTiles][2];            // this thread's part of their running sums
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) o[rt][dt][0] = o[rt][dt][1] = o[rt][dt][2] = o[rt][dt][3] = 0.0f;
    m_run[rt][0] = m_run[rt][1] = -CUDART_INF_F;
    l_run[rt][0] = l_run[rt][1] = 0.0f;
  }

  // Positions of the thread's rows (per row tile) and of the warp's last row; rows past the chunk
  // are clamped to the last query (their results are discarded; clamping keeps them finite).
  const int last_query = p.n - 1;
  int pos_lo[kRowTiles], pos_hi[kRowTiles], tile_first_pos[kRowTiles];
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt) {
    const int r = m0 + row0 + 16 * rt;
    pos_lo[rt] = p.pos0 + min(r + (lane >> 2), last_query);
    pos_hi[rt] = p.pos0 + min(r + (lane >> 2) + 8, last_query);
    tile_first_pos[rt] = p.pos0 + min(r, last_query);
  }
  const int warp_last_pos = p.pos0 + min(m0 + row0 + C::kRowsPerWarp - 1, last_query);
  const bool warp_has_rows = m0 + row0 < p.n;

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait<kStages - 2>();  // tile j has landed (this thread's part)
    __syncthreads();               // every thread's part; and every warp is done with tile j − 1,
                                   // whose stage the load below overwrites
    const int j_next = j + kStages - 1;
    if (j_next < n_tiles) load_kv(j_next, j_next % kStages);
    cp_async_commit();

    const int key0 = j * kBlockN;
    // Tiles entirely in the future of the warp's rows would contribute only zeros: skip them (the
    // warp still takes part in the loads and barriers above).
    if (!warp_has_rows || key0 > warp_last_pos) continue;
    const int stage = j % kStages;

    float s[kRowTiles][kBlockN / 8][4];  // raw scores q·k: per row tile 16 rows x kBlockN keys, C layout
    qk_tile<kHeadDim, kBlockN, kRowTiles>(s, q_operand, sQ, row0, sK + stage * C::kTileElems, lane);
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
      // Only tiles that reach past the row tile's first position need the mask (this includes the
      // tail tile: its zero-filled slots >= kv_end lie past every row's position).
      if (key0 + kBlockN - 1 > tile_first_pos[rt]) causal_mask<kBlockN>(s[rt], key0, pos_lo[rt], pos_hi[rt], lane);
      online_softmax<kHeadDim, kBlockN>(s[rt], o[rt], m_run[rt], l_run[rt], p.scale_log2);
    }
    pv_tile<kHeadDim, kBlockN, kRowTiles>(o, s, sV + stage * C::kTileElems, lane);
  }
  cp_async_wait<0>();  // only empty groups can remain; drain them anyway before leaving

  if (warp_has_rows) {
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) store_output<kHeadDim>(o[rt], l_run[rt], sQ, p, m0, row0 + 16 * rt, h, lane);
  }
}

}  // namespace ra::cuda::prefill_mma
