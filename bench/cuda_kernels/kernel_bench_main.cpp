// ra-bench-kernels: times every CUDA kernel family alone and prints one table (and JSON with --json):
// median µs per launch, and the bandwidth and rate that time implies for the bytes and FLOPs the
// kernel must move. Usage: ra-bench-kernels [--quick] [--only NAME[,NAME...]] [--json FILE]

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/cuda_kernels/kernel_bench.h"
#include "common/error.h"
#include "gpu_worker/backend/cuda/cuda_check.h"

namespace ra::bench {
namespace {

std::map<std::string, KernelBenchFn>& registry() {
  static std::map<std::string, KernelBenchFn> r;
  return r;
}

}  // namespace

bool register_kernel_bench(const char* name, KernelBenchFn fn) {
  registry()[name] = fn;
  return true;
}

double time_launch_us(KernelBenchContext& ctx, const std::function<void()>& launch, int batch, int repeats) {
  if (ctx.quick) {
    batch = std::min(batch, 4);
    repeats = std::min(repeats, 5);
  }
  cudaStream_t s = ctx.stream;
  launch();  // warm-up outside the graph: module load, first-touch
  RA_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaGraph_t graph = nullptr;
  RA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < batch; ++i) launch();
  RA_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  cudaGraphExec_t exec = nullptr;
  RA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t start, stop;
  RA_CUDA_CHECK(cudaEventCreate(&start));
  RA_CUDA_CHECK(cudaEventCreate(&stop));
  RA_CUDA_CHECK(cudaGraphLaunch(exec, s));  // warm-up replay
  std::vector<float> ms(static_cast<size_t>(repeats));
  for (int r = 0; r < repeats; ++r) {
    RA_CUDA_CHECK(cudaEventRecord(start, s));
    RA_CUDA_CHECK(cudaGraphLaunch(exec, s));
    RA_CUDA_CHECK(cudaEventRecord(stop, s));
    RA_CUDA_CHECK(cudaEventSynchronize(stop));
    RA_CUDA_CHECK(cudaEventElapsedTime(&ms[static_cast<size_t>(r)], start, stop));
  }
  RA_CUDA_CHECK(cudaEventDestroy(start));
  RA_CUDA_CHECK(cudaEventDestroy(stop));
  RA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  RA_CUDA_CHECK(cudaGraphDestroy(graph));
  std::nth_element(ms.begin(), ms.begin() + repeats / 2, ms.end());
  return 1e3 * ms[static_cast<size_t>(repeats / 2)] / batch;
}

}  // namespace ra::bench

int main(int argc, char** argv) {
  using namespace ra::bench;
  std::string json_path, only;
  KernelBenchContext ctx;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) {
      ctx.quick = true;
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) {
      only = std::string(",") + argv[++i] + ",";
    } else {
      std::fprintf(stderr, "usage: ra-bench-kernels [--quick] [--only NAME[,NAME...]] [--json FILE]\n");
      return 2;
    }
  }
  try {
    int device = 0, count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      std::fprintf(stderr, "ra-bench-kernels: no CUDA device\n");
      return 1;
    }
    cudaDeviceProp prop{};
    RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    ctx.sm_count = prop.multiProcessorCount;
    RA_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
    std::printf("device: %s, %d SMs, %.0f MiB\n", prop.name, prop.multiProcessorCount,
                static_cast<double>(prop.totalGlobalMem) / (1 << 20));
    for (const auto& [name, fn] : registry()) {
      if (!only.empty() && only.find("," + name + ",") == std::string::npos) continue;
      fn(ctx);
    }
    std::printf("%-20s %-58s %10s %10s %10s\n", "kernel", "shape", "us", "GB/s", "TFLOP/s");
    nlohmann::json rows = nlohmann::json::array();
    for (const KernelRow& r : ctx.rows) {
      const double gbs = r.us > 0 ? r.bytes / (r.us * 1e3) : 0;
      const double tflops = r.us > 0 ? r.flops / (r.us * 1e6) : 0;
      std::printf("%-20s %-58s %10.2f %10.1f %10.2f\n", r.kernel.c_str(), r.shape.c_str(), r.us, gbs, tflops);
      rows.push_back({{"kernel", r.kernel}, {"shape", r.shape}, {"us", r.us}, {"bytes", r.bytes}, {"flops", r.flops},
                      {"gb_per_s", gbs}, {"tflop_per_s", tflops}});
    }
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << nlohmann::json{{"device", prop.name}, {"rows", rows}}.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ra-bench-kernels: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
