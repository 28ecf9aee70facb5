// ra-bench-kernels: causal prefill attention (the tensor-core kernel) at Llama-3-8B shapes: 32 query
// heads, 8 kv heads, head_dim 128, bf16; chunks of 4096 queries at the start, in the middle and at the
// end of a 128K prompt, one 16K chunk from the start, and one head_dim 64 case. Rows:
//   prefill_attention     the dispatcher (what the pipeline runs)
//   prefill_attn_mma16/32 the tensor-core kernel with 16 / 32 query rows per warp, to choose the
//                         dispatcher's default (kDefaultRowsPerWarp* in prefill_attention.cu)
// Work counters:
//   FLOPs = 4 · head_dim · n_heads · Σ_i (pos0 + i + 1)   (q·k and p·v over the causal keys)
//   bytes = q + o + K and V of slots [0, pos0 + n) read once.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda_kernels/kernel_bench.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/prefill_attention.h"

namespace ra::bench {
namespace {

using cuda::bfloat16;

struct Case {
  int n;         // queries in the chunk
  int64_t pos0;  // position of the first query
  int n_heads;
  int n_kv_heads;
  int head_dim;
};

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<bfloat16, CudaFree>;

DeviceBuffer alloc_bf16(size_t n) {
  void* p = nullptr;
  RA_CUDA_CHECK(cudaMalloc(&p, n * sizeof(bfloat16)));
  return DeviceBuffer(static_cast<bfloat16*>(p));
}

// N(0, 1) values: one random block of 4M values, repeated to fill the buffer.
void fill_random(bfloat16* dst, size_t n, uint64_t seed) {
  std::vector<bfloat16> block(std::min<size_t>(n, size_t{1} << 22));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (bfloat16& x : block) x = __float2bfloat16_rn(dist(rng));
  for (size_t at = 0; at < n; at += block.size()) {
    const size_t count = std::min(block.size(), n - at);
    RA_CUDA_CHECK(cudaMemcpy(dst + at, block.data(), count * sizeof(bfloat16), cudaMemcpyHostToDevice));
  }
}

double causal_flops(const Case& c) {
  // Σ_{i<n} (pos0 + i + 1) = n · pos0 + n (n + 1) / 2
  const double keys = static_cast<double>(c.n) * static_cast<double>(c.pos0) + 0.5 * c.n * (c.n + 1.0);
  return 4.0 * c.head_dim * c.n_heads * keys;
}

double bytes_moved(const Case& c) {
  const double qo = 2.0 * c.n * c.n_heads * c.head_dim;
  const double kv = 2.0 * c.n_kv_heads * static_cast<double>(c.pos0 + c.n) * c.head_dim;
  return sizeof(bfloat16) * (qo + kv);
}

void bench_prefill_attention(KernelBenchContext& ctx) {
  std::vector<Case> cases;
  if (ctx.quick) {
    cases = {{1024, 0, 32, 8, 128}, {1024, 7168, 32, 8, 128}, {2048, 0, 32, 8, 64}};
  } else {
    cases = {{4096, 0, 32, 8, 128},
             {4096, 28672, 32, 8, 128},
             {4096, 126976, 32, 8, 128},
             {16384, 0, 32, 8, 128},
             {4096, 28672, 32, 8, 64}};
  }
  size_t q_elems = 0, kv_elems = 0;
  for (const Case& c : cases) {
    q_elems = std::max(q_elems, static_cast<size_t>(c.n) * c.n_heads * c.head_dim);
    kv_elems = std::max(kv_elems, static_cast<size_t>(c.n_kv_heads) * (c.pos0 + c.n) * c.head_dim);
  }
  DeviceBuffer q = alloc_bf16(q_elems), o = alloc_bf16(q_elems);
  DeviceBuffer k = alloc_bf16(kv_elems), v = alloc_bf16(kv_elems);
  fill_random(q.get(), q_elems, 1);
  fill_random(k.get(), kv_elems, 2);
  fill_random(v.get(), kv_elems, 3);

  for (const Case& c : cases) {
    const int64_t capacity = c.pos0 + c.n;  // each case views the buffers as [n_kv_heads][capacity][hd]
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const double flops = causal_flops(c);
    // The long chunks take tens of ms each: fewer launches per graph and fewer replays.
    const bool long_case = flops > 1e12;
    const std::string shape = "n=" + std::to_string(c.n) + " pos0=" + std::to_string(c.pos0) +
                              " heads=" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
                              " hd=" + std::to_string(c.head_dim) + " bf16 causal";
    for (int rows_per_warp : {0, 16, 32}) {  // 0: the dispatcher
      auto launch = [&] {
        RA_CUDA_CHECK(rows_per_warp == 0 ? cuda::prefill_attention<bfloat16>(q.get(), k.get(), v.get(), o.get(), c.n,
                                                                             c.pos0, c.n_heads, c.n_kv_heads,
                                                                             c.head_dim, capacity, scale, ctx.stream)
                                         : cuda::prefill_attention_tensor_core(
                                               rows_per_warp, q.get(), k.get(), v.get(), o.get(), c.n, c.pos0,
                                               c.n_heads, c.n_kv_heads, c.head_dim, capacity, scale, ctx.stream));
      };
      const double us = time_launch_us(ctx, launch, long_case ? 2 : 20, long_case ? 7 : 25);
      const std::string kernel =
          rows_per_warp == 0 ? "prefill_attention" : "prefill_attn_mma" + std::to_string(rows_per_warp);
      ctx.rows.push_back({kernel, shape, us, bytes_moved(c), flops});
    }
  }
}

}  // namespace

RA_REGISTER_KERNEL_BENCH(prefill_attention, bench_prefill_attention);

}  // namespace ra::bench
