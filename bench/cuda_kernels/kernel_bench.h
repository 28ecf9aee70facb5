#pragma once
// The CUDA kernel micro-benchmarks (ra-bench-kernels): each kernel alone, on data several times the
// L2, timed with CUDA events over graph replays, reported with the bytes and FLOPs it must move so the
// achieved bandwidth and rate sit beside the time. Each kernel family registers one function here.

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ra::bench {

struct KernelRow {
  std::string kernel;  // "gemv", "decode_attention", ...
  std::string shape;   // "rows=4096 cols=4096 bf16"
  double us = 0;       // median microseconds per launch
  double bytes = 0;    // the fewest bytes it must move (inputs read once, outputs written once)
  double flops = 0;    // floating-point operations (2 per multiply-add)
};

struct KernelBenchContext {
  cudaStream_t stream = nullptr;
  int sm_count = 0;
  bool quick = false;  // smaller sizes and fewer repeats (a smoke run)
  std::vector<KernelRow> rows;
};

// Median microseconds of one call of `launch` (which enqueues work on ctx.stream): captured `batch`
// times into one CUDA graph, replayed `repeats` times after a warm-up; the median replay divided by
// batch. Throws ra::Error on a CUDA error.
double time_launch_us(KernelBenchContext& ctx, const std::function<void()>& launch, int batch = 20,
                      int repeats = 25);

using KernelBenchFn = void (*)(KernelBenchContext&);
// Registers a family; use RA_REGISTER_KERNEL_BENCH(name, fn) at namespace scope in its .cpp/.cu file.
bool register_kernel_bench(const char* name, KernelBenchFn fn);

}  // namespace ra::bench

#define RA_REGISTER_KERNEL_BENCH(name, fn) \
  [[maybe_unused]] static const bool ra_kernel_bench_##name = ::ra::bench::register_kernel_bench(#name, fn)
