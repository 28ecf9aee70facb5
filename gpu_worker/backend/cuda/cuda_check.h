#pragma once
// One CUDA check macro (STYLE §5): logs the statement, file:line and the CUDA error string, and throws
// ra::Error. With RA_CUDA_SYNC_DEBUG set in the environment, RA_CUDA_LAUNCH_CHECK synchronises after
// every launch so an asynchronous fault is reported at the launch that caused it.

#include <cuda_runtime.h>

#include <cstdlib>

#include "common/error.h"

namespace ra::cuda {

inline bool sync_debug() {
  static const bool enabled = std::getenv("RA_CUDA_SYNC_DEBUG") != nullptr;
  return enabled;
}

}  // namespace ra::cuda

#define RA_CUDA_CHECK(stmt)                                                                    \
  do {                                                                                         \
    const cudaError_t ra_cuda_err_ = (stmt);                                                   \
    if (ra_cuda_err_ != cudaSuccess) {                                                         \
      ::ra::raise("CUDA error {} ({}) in '{}' at {}:{}", cudaGetErrorName(ra_cuda_err_),       \
                  cudaGetErrorString(ra_cuda_err_), #stmt, __FILE__, __LINE__);               \
    }                                                                                          \
  } while (0)

#define RA_CUDA_LAUNCH_CHECK()                                             \
  do {                                                                     \
    RA_CUDA_CHECK(cudaGetLastError());                                     \
    if (::ra::cuda::sync_debug()) RA_CUDA_CHECK(cudaDeviceSynchronize());  \
  } while (0)
