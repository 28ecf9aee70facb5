#include "gpu_worker/backend/cuda/device_memory.h"

#include <atomic>

#include "common/error.h"
#include "gpu_worker/backend/cuda/cuda_check.h"

namespace ra::cuda {
namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

}  // namespace

DeviceMemoryStats device_memory_stats() { return {g_current.load(), g_peak.load()}; }

void reset_peak_device_memory() { g_peak.store(g_current.load()); }

void* device_allocate(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free allocation error
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    raise("GPU out of memory: {} needs {:.2f} GiB, {:.2f} of {:.2f} GiB free ({})", what,
          static_cast<double>(bytes) / (1 << 30), static_cast<double>(free) / (1 << 30),
          static_cast<double>(total) / (1 << 30), cudaGetErrorString(err));
  }
  const int64_t now = g_current.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void device_free(void* ptr, size_t bytes) noexcept {
  if (ptr == nullptr) return;
  cudaFree(ptr);
  g_current.fetch_sub(static_cast<int64_t>(bytes));
}

void* pinned_allocate(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t err = cudaMallocHost(&p, bytes);
  RA_REQUIRE(err == cudaSuccess, "cannot allocate {} bytes of pinned host memory for {}: {}", bytes, what,
             cudaGetErrorString(err));
  return p;
}

void pinned_free(void* ptr) noexcept {
  if (ptr != nullptr) cudaFreeHost(ptr);
}

}  // namespace ra::cuda
