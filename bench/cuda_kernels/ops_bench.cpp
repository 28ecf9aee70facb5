// The decode step's GEMVs at the five Llama-3-8B shapes (bf16 weights), token sampling over the
// Llama-3 vocabulary, and RoPE + KV append. GEMV bytes are weights + x + y (+ norm weights): the
// weights dominate, so GB/s here is the achieved HBM bandwidth (target: >= 85% of the card's copy
// bandwidth). Weights are rotated over enough copies (>= 200 MB, 4x the L2) that every replay streams
// them from HBM. Sampling reads 501 KB of logits that stay in L2; its bytes are those logits.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/cuda_kernels/kernel_bench.h"
#include "common/sample_uniform.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/gemv.h"
#include "gpu_worker/backend/cuda/ops.h"
#include "gpu_worker/backend/cuda/sampling.h"

namespace ra::bench {
namespace {

using cuda::bfloat16;
using cuda::GemvEpilogue;

constexpr double kRotateBytes = 200e6;  // >= 4x the 50 MB L2 of an H100/H200
constexpr float kEps = 1e-5f;

// A device allocation freed on scope exit.
template <typename T>
class Buffer {
 public:
  explicit Buffer(size_t n) { RA_CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(1, n) * sizeof(T))); }
  ~Buffer() { cudaFree(ptr_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

struct GemvShape {
  const char* name;
  int rows;
  int cols;
  GemvEpilogue epilogue;
  bool norm;
};

const char* epilogue_name(GemvEpilogue e) {
  return e == GemvEpilogue::kStore ? "store" : e == GemvEpilogue::kAddInto ? "add" : "swiglu";
}

void bench_gemv_shape(KernelBenchContext& ctx, const GemvShape& s) {
  const int64_t elems = static_cast<int64_t>(s.rows) * s.cols;
  const double weight_bytes = 2.0 * static_cast<double>(elems);
  const int copies = ctx.quick ? 1 : std::max(1, static_cast<int>(std::ceil(kRotateBytes / weight_bytes)));
  const int out_rows = s.epilogue == GemvEpilogue::kSwiGlu ? s.rows / 2 : s.rows;
  Buffer<bfloat16> w(static_cast<size_t>(elems) * copies);
  Buffer<float> x(static_cast<size_t>(s.cols)), norm_w(static_cast<size_t>(s.cols)), y(static_cast<size_t>(out_rows));
  RA_CUDA_CHECK(cuda::fill_random<bfloat16>(w.get(), elems * copies, 0.02f, 1, ctx.stream));
  RA_CUDA_CHECK(cuda::fill_random<float>(x.get(), s.cols, 1.0f, 2, ctx.stream));
  RA_CUDA_CHECK(cuda::fill_constant(norm_w.get(), s.cols, 1.0f, ctx.stream));
  RA_CUDA_CHECK(cuda::fill_constant(y.get(), out_rows, 0.0f, ctx.stream));
  int next = 0;  // each captured launch reads the next copy
  const double us = time_launch_us(ctx, [&] {
    const bfloat16* wi = w.get() + (next++ % copies) * elems;
    RA_CUDA_CHECK(cuda::gemv<bfloat16>(wi, x.get(), s.norm ? norm_w.get() : nullptr, kEps, y.get(), s.rows, s.cols,
                                       s.epilogue, ctx.stream));
  });
  const double bytes = weight_bytes + 4.0 * (s.cols * (s.norm ? 2 : 1) + out_rows);
  const std::string shape = std::string(s.name) + " rows=" + std::to_string(s.rows) + " cols=" +
                            std::to_string(s.cols) + " " + epilogue_name(s.epilogue) + (s.norm ? "+norm" : "") +
                            " bf16";
  ctx.rows.push_back({"gemv", shape, us, bytes, 2.0 * static_cast<double>(elems)});
}

void bench_gemv(KernelBenchContext& ctx) {
  const GemvShape shapes[] = {
      {"qkv", 6144, 4096, GemvEpilogue::kStore, true},
      {"o", 4096, 4096, GemvEpilogue::kAddInto, false},
      {"gate_up", 28672, 4096, GemvEpilogue::kSwiGlu, true},
      {"down", 4096, 14336, GemvEpilogue::kAddInto, false},
      {"lm_head", 128256, 4096, GemvEpilogue::kStore, true},
  };
  for (const GemvShape& s : shapes) bench_gemv_shape(ctx, s);
}

void bench_sampling(KernelBenchContext& ctx) {
  constexpr int kVocab = 128256;
  Buffer<float> logits(kVocab);
  RA_CUDA_CHECK(cuda::fill_random<float>(logits.get(), kVocab, 3.0f, 3, ctx.stream));  // within about ±10
  const SamplingParams configs[] = {{0.0f, 1.0f, 1}, {1.0f, 1.0f, 2}, {0.7f, 0.9f, 3}};
  for (const SamplingParams& p : configs) {
    Buffer<SamplingParams> params(1);
    Buffer<uint64_t> step(1);
    Buffer<int32_t> out(1);
    RA_CUDA_CHECK(cudaMemcpyAsync(params.get(), &p, sizeof(p), cudaMemcpyHostToDevice, ctx.stream));
    RA_CUDA_CHECK(cudaMemsetAsync(step.get(), 0, sizeof(uint64_t), ctx.stream));
    RA_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // p lives on this frame
    const double us = time_launch_us(ctx, [&] {
      RA_CUDA_CHECK(cuda::sample_token(logits.get(), kVocab, params.get(), step.get(), out.get(), ctx.stream));
    });
    const std::string shape = "vocab=128256 T=" + std::to_string(p.temperature).substr(0, 3) +
                              " top_p=" + std::to_string(p.top_p).substr(0, 3);
    ctx.rows.push_back({"sample_token", shape, us, 4.0 * kVocab, 0.0});
  }
}

// Llama-3-8B attention geometry: 32 query heads, 8 kv heads, head_dim 128, bf16 cache.
void bench_rope_append(KernelBenchContext& ctx) {
  constexpr int kHeads = 32, kKvHeads = 8, kDim = 128, kWidth = (kHeads + 2 * kKvHeads) * kDim;
  constexpr int64_t kSinks = 128, kWindow = 512;
  Buffer<float> inv_freq(kDim / 2), q(static_cast<size_t>(kHeads) * kDim);
  Buffer<float> evicted_k(static_cast<size_t>(kKvHeads) * kDim), evicted_v(static_cast<size_t>(kKvHeads) * kDim);
  RA_CUDA_CHECK(cuda::fill_constant(inv_freq.get(), kDim / 2, 1e-3f, ctx.stream));

  {  // decode: one token into the static cache, evicting (position past sinks + window)
    Buffer<float> qkv(kWidth);
    const int64_t capacity = kSinks + kWindow;
    const size_t cache_elems = static_cast<size_t>(kKvHeads * capacity * kDim);
    Buffer<bfloat16> k(cache_elems), v(cache_elems);
    Buffer<int64_t> position(1);
    const int64_t p = 100000;
    RA_CUDA_CHECK(cudaMemcpyAsync(position.get(), &p, sizeof(p), cudaMemcpyHostToDevice, ctx.stream));
    RA_CUDA_CHECK(cuda::fill_random<float>(qkv.get(), kWidth, 1.0f, 4, ctx.stream));
    RA_CUDA_CHECK(cuda::fill_random<bfloat16>(k.get(), kKvHeads * capacity * kDim, 1.0f, 5, ctx.stream));
    RA_CUDA_CHECK(cuda::fill_random<bfloat16>(v.get(), kKvHeads * capacity * kDim, 1.0f, 6, ctx.stream));
    RA_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    const double us = time_launch_us(ctx, [&] {
      RA_CUDA_CHECK(cuda::rope_append_decode<bfloat16>(qkv.get(), q.get(), k.get(), v.get(), position.get(), kSinks,
                                                       kWindow, kHeads, kKvHeads, kDim, capacity, inv_freq.get(),
                                                       evicted_k.get(), evicted_v.get(), ctx.stream));
    });
    const double bytes = 4.0 * (kWidth + kHeads * kDim) + 2.0 * kKvHeads * kDim * (2 * 2 + 2 * 4);
    ctx.rows.push_back({"rope_append", "decode H=32 KV=8 D=128 static bf16", us, bytes, 0.0});
  }
  {  // prefill: a chunk of tokens into a full cache
    const int n = ctx.quick ? 512 : 4096;
    Buffer<float> qkv(static_cast<size_t>(n) * kWidth);
    Buffer<bfloat16> qb(static_cast<size_t>(n) * kHeads * kDim);
    Buffer<bfloat16> k(static_cast<size_t>(kKvHeads) * n * kDim), v(static_cast<size_t>(kKvHeads) * n * kDim);
    RA_CUDA_CHECK(cuda::fill_random<float>(qkv.get(), static_cast<int64_t>(n) * kWidth, 1.0f, 7, ctx.stream));
    const double us = time_launch_us(ctx, [&] {
      RA_CUDA_CHECK(cuda::rope_append_prefill<bfloat16>(qkv.get(), qb.get(), k.get(), v.get(), n, 0, kHeads, kKvHeads,
                                                        kDim, n, inv_freq.get(), ctx.stream));
    });
    const double bytes = static_cast<double>(n) * (4.0 * kWidth + 2.0 * (kHeads + 2 * kKvHeads) * kDim);
    ctx.rows.push_back({"rope_append", "prefill n=" + std::to_string(n) + " H=32 KV=8 D=128 bf16", us, bytes, 0.0});
  }
}

}  // namespace
}  // namespace ra::bench

RA_REGISTER_KERNEL_BENCH(gemv, ra::bench::bench_gemv);
RA_REGISTER_KERNEL_BENCH(sampling, ra::bench::bench_sampling);
RA_REGISTER_KERNEL_BENCH(rope_append, ra::bench::bench_rope_append);
