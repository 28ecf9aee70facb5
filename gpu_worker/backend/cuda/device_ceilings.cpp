#include "gpu_worker/backend/cuda/device_ceilings.h"

#include <algorithm>
#include <vector>

#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/device_memory.h"
#include "gpu_worker/backend/cuda/gemm.h"
#include "gpu_worker/backend/cuda/ops.h"

namespace ra::cuda {
namespace {

// Median milliseconds of `repeats` timed runs of `work` on `s`, after one warm-up.
template <typename F>
double median_ms(cudaStream_t s, int repeats, F&& work) {
  cudaEvent_t a, b;
  RA_CUDA_CHECK(cudaEventCreate(&a));
  RA_CUDA_CHECK(cudaEventCreate(&b));
  work();
  std::vector<float> ms(static_cast<size_t>(repeats));
  for (auto& t : ms) {
    RA_CUDA_CHECK(cudaEventRecord(a, s));
    work();
    RA_CUDA_CHECK(cudaEventRecord(b, s));
    RA_CUDA_CHECK(cudaEventSynchronize(b));
    RA_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::nth_element(ms.begin(), ms.begin() + repeats / 2, ms.end());
  return ms[static_cast<size_t>(repeats / 2)];
}

}  // namespace

DeviceCeilings measure_device_ceilings() {
  DeviceCeilings out;
  int device = 0;
  RA_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  RA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  out.device = prop.name;
  out.sm_count = prop.multiProcessorCount;
  out.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  cudaStream_t s = nullptr;
  RA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  {
    const size_t bytes = size_t{2} << 30;
    DeviceBuffer<std::byte> src(bytes, "bandwidth probe"), dst(bytes, "bandwidth probe");
    RA_CUDA_CHECK(cudaMemsetAsync(src.get(), 1, bytes, s));
    const double ms = median_ms(s, 10, [&] {
      RA_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
    });
    out.copy_gb_per_s = 2.0 * static_cast<double>(bytes) / (ms * 1e6);
  }
  {
    constexpr int64_t n = 8192;
    DeviceBuffer<bfloat16> x(n * n, "GEMM probe"), w(n * n, "GEMM probe");
    DeviceBuffer<float> y(n * n, "GEMM probe");
    RA_CUDA_CHECK(fill_random<bfloat16>(x.get(), n * n, 1.0f, 11, s));
    RA_CUDA_CHECK(fill_random<bfloat16>(w.get(), n * n, 1.0f, 12, s));
    Gemm gemm;
    const double ms = median_ms(s, 10, [&] { gemm.run<bfloat16>(x.get(), w.get(), y.get(), n, n, n, false, s); });
    out.bf16_tflop_per_s = 2.0 * n * n * n / (ms * 1e9);
  }
  RA_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaStreamDestroy(s);
  return out;
}

}  // namespace ra::cuda
