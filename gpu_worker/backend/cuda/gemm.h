#pragma once
// The prefill's matrix products on cuBLASLt, in the shape every projection of a Llama layer has:
//
//   y[m][n] (= or +=) x[m][k] · w[n][k]^T
//   x: [m][k] T (activations, row-major), w: [n][k] T (HF [out_features][in_features] weights),
//   y: [m][n] float32. accumulate = true adds into y (the residual stream: beta = 1).
//
// T ∈ {float, bfloat16}; products accumulate in float32 (CUBLAS_COMPUTE_32F: no TF32 for float32).
// Plan/run: the first call of a shape asks cuBLASLt's heuristic for an algorithm and keeps it with the
// operation's descriptors; later calls of that shape only launch. One workspace, owned here.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "gpu_worker/backend/cuda/device_memory.h"
#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

class Gemm {
 public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  template <typename T>
  void run(const T* x, const T* w, float* y, int64_t m, int64_t n, int64_t k, bool accumulate, cudaStream_t stream);

 private:
  struct Plan;
  // dtype, m, n, k, accumulate, the pointers' common alignment in bytes (cuBLASLt picks algorithms for it)
  using Key = std::tuple<int, int64_t, int64_t, int64_t, bool, int>;
  const Plan& plan(DType dtype, int64_t m, int64_t n, int64_t k, bool accumulate, int alignment);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer<std::byte> workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace ra::cuda
