#pragma once
// Shared pieces of the GPU tests (label gpu): device detection, RAII device arrays, host-side bf16,
// deterministic random data, error metrics, and the op table that backend_ops_gpu_test prints at the
// end, one row per (op, shape, dtype) checked against the CPU reference, in the style of llama.cpp's
// test-backend-ops.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gpu_worker/backend/cuda/cuda_check.h"

namespace ra::gpu_test {

// True when a CUDA device is visible. Tests start with: if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
bool have_gpu();

// A device array of n elements; freed on destruction. Poisoned with 0xFF bytes (NaN for float/bf16)
// when created without data, so an unwritten output shows up as NaN.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    RA_CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(1, n) * sizeof(T)));
    RA_CUDA_CHECK(cudaMemset(ptr_, 0xFF, std::max<size_t>(1, n) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  void upload(const std::vector<T>& host) {
    RA_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> out(n_);
    RA_CUDA_CHECK(cudaDeviceSynchronize());
    RA_CUDA_CHECK(cudaMemcpy(out.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// Host conversions (round to nearest even, as the device does).
inline __nv_bfloat16 to_bf16(float x) { return __float2bfloat16_rn(x); }
inline float from_bf16(__nv_bfloat16 x) { return __bfloat162float(x); }
std::vector<__nv_bfloat16> to_bf16(std::span<const float> x);
std::vector<float> from_bf16(std::span<const __nv_bfloat16> x);
// x rounded to bf16 and back: the values a bf16 kernel actually sees.
std::vector<float> round_bf16(std::span<const float> x);

// Typed helpers so tests can be written once for T ∈ {float, __nv_bfloat16}.
template <typename T>
std::vector<T> to_type(std::span<const float> x);
template <typename T>
std::vector<float> to_floats(std::span<const T> x);
template <typename T>
const char* type_name();

// n values from N(mean, stddev), deterministic in seed.
std::vector<float> random_normal(size_t n, uint64_t seed, float stddev = 1.0f, float mean = 0.0f);

// Σ (a − r)² / Σ r² (normalised MSE, test-backend-ops' metric); +inf when a has a NaN or inf that r has not.
double nmse(std::span<const float> actual, std::span<const float> reference);
// max |a − r| / max |r|.
double max_relative_error(std::span<const float> actual, std::span<const float> reference);

// Adds one row to the table printed after all tests, and returns pass (nmse <= tolerance, no NaN).
// op: "gemv", ...; shape: "rows=4096 cols=4096 epilogue=add"; dtype: "bf16", "f32".
bool record_op(const std::string& op, const std::string& shape, const std::string& dtype, double nmse_value,
               double max_rel, double tolerance);

// Usage: EXPECT_OP(op, shape, dtype, actual, reference, tolerance) records a row and fails the test
// (with the figures) when the row fails. Each argument is evaluated once (actual may run a model).
#define EXPECT_OP(op, shape, dtype, actual, reference, tolerance)                                       \
  do {                                                                                                 \
    const auto& ra_actual_ = (actual);                                                                 \
    const auto& ra_reference_ = (reference);                                                           \
    const double ra_nmse_ = ::ra::gpu_test::nmse(ra_actual_, ra_reference_);                           \
    const double ra_rel_ = ::ra::gpu_test::max_relative_error(ra_actual_, ra_reference_);              \
    EXPECT_TRUE(::ra::gpu_test::record_op(op, shape, dtype, ra_nmse_, ra_rel_, tolerance))             \
        << op << " " << shape << " " << dtype << ": nmse " << ra_nmse_ << " (tolerance " << tolerance \
        << "), max relative error " << ra_rel_;                                                        \
  } while (0)

}  // namespace ra::gpu_test
