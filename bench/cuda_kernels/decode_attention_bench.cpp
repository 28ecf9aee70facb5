// decode_attention at the Llama-3-8B shape (32 query heads, 8 kv heads, head_dim 128, bf16 KV): full
// attention at 640 .. 512K valid slots, and the static set (128 sinks + 512 window). Bytes are what
// one call must move: K and V of the valid slots, q, o and lse. Small caches are rotated over several
// layers (as a decode step reads 32 of them) so each replay reads from HBM, not from L2.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda_kernels/kernel_bench.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/decode_attention.h"
#include "gpu_worker/backend/cuda/static_set.h"

namespace ra::bench {
namespace {

using cuda::bfloat16;

constexpr int kHeads = 32;
constexpr int kKvHeads = 8;
constexpr int kHeadDim = 128;
constexpr double kRotateBytes = 200e6;  // ≥ 4× the 50 MB L2 of an H100/H200
constexpr int kMaxLayers = 32;          // Llama-3-8B's layer count

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

// Fills n bf16 values with a tiled random pattern (finite values; timing does not depend on them).
void fill_random(bfloat16* dst, size_t n, uint64_t seed) {
  constexpr size_t kPattern = size_t{1} << 20;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<bfloat16> pattern(kPattern);
  for (auto& x : pattern) x = __float2bfloat16_rn(dist(rng));
  for (size_t at = 0; at < n; at += kPattern) {
    const size_t count = std::min(kPattern, n - at);
    RA_CUDA_CHECK(cudaMemcpy(dst + at, pattern.data(), count * sizeof(bfloat16), cudaMemcpyHostToDevice));
  }
}

// One row: the cache holds `capacity` slots per kv head, the step at `position` attends over `valid`.
void bench_case(KernelBenchContext& ctx, const std::string& mode, int64_t capacity, int64_t sinks, int64_t window,
                int64_t position) {
  const int64_t valid = cuda::valid_slots(position, sinks, window);
  const auto plan =
      cuda::plan_decode_attention(kHeads, kKvHeads, kHeadDim, capacity, cuda::DType::kBF16, ctx.sm_count);
  const size_t layer_elems = static_cast<size_t>(kKvHeads) * static_cast<size_t>(capacity) * kHeadDim;
  const double layer_bytes = 2.0 * static_cast<double>(layer_elems) * sizeof(bfloat16);
  const int layers = static_cast<int>(std::clamp(std::ceil(kRotateBytes / layer_bytes), 1.0, double{kMaxLayers}));

  Buffer<bfloat16> k(layer_elems * layers), v(layer_elems * layers);
  fill_random(k.get(), layer_elems * layers, 1);
  fill_random(v.get(), layer_elems * layers, 2);
  Buffer<float> q(kHeads * kHeadDim), o(kHeads * kHeadDim), lse(kHeads);
  std::vector<float> q_host(kHeads * kHeadDim);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& x : q_host) x = dist(rng);
  RA_CUDA_CHECK(cudaMemcpy(q.get(), q_host.data(), q_host.size() * sizeof(float), cudaMemcpyHostToDevice));
  Buffer<unsigned char> workspace(plan.workspace_bytes);
  Buffer<int64_t> d_position(1);
  RA_CUDA_CHECK(cudaMemcpy(d_position.get(), &position, sizeof(position), cudaMemcpyHostToDevice));
  RA_CUDA_CHECK(cudaDeviceSynchronize());

  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  int next = 0;  // the layer of the next launch: consecutive launches (and captured nodes) rotate
  const auto launch = [&] {
    const size_t at = static_cast<size_t>(next++ % layers) * layer_elems;
    RA_CUDA_CHECK(cuda::decode_attention<bfloat16>(plan, q.get(), k.get() + at, v.get() + at, d_position.get(), sinks,
                                                   window, scale, o.get(), lse.get(), workspace.get(), ctx.stream));
  };
  const double us = time_launch_us(ctx, launch, std::max(20, layers));

  KernelRow row;
  row.kernel = "decode_attention";
  row.shape = mode + " valid=" + std::to_string(valid) + " h=32/8 d=128 bf16 splits=" + std::to_string(plan.max_splits);
  row.us = us;
  row.bytes = 2.0 * kKvHeads * static_cast<double>(valid) * kHeadDim * sizeof(bfloat16) +
              2.0 * kHeads * kHeadDim * sizeof(float) + kHeads * sizeof(float);
  row.flops = 4.0 * kHeads * static_cast<double>(valid) * kHeadDim;  // QK and PV, 2 per multiply-add
  ctx.rows.push_back(row);
}

void bench_decode_attention(KernelBenchContext& ctx) {
  std::vector<int64_t> lengths = {640, 4096, 32768, 131072, 524288};
  if (ctx.quick) lengths.resize(3);
  for (int64_t n : lengths) bench_case(ctx, "full", n, 0, 0, n - 1);
  bench_case(ctx, "static S=128 W=512", 640, 128, 512, 100000);
}

}  // namespace
}  // namespace ra::bench

RA_REGISTER_KERNEL_BENCH(decode_attention, ra::bench::bench_decode_attention);
