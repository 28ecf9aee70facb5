// The GPU merge kernel against the CPU merge of common/partial_state.h (the reference).
// Skips cleanly when no CUDA device is present.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/partial_state.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/attention/merge_partials_cuda.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(const std::vector<T>& host) : n(host.size()) {
    RA_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T)));
    RA_CUDA_CHECK(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  std::vector<T> to_host() const {
    std::vector<T> out(n);
    RA_CUDA_CHECK(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }
  T* ptr = nullptr;
  size_t n;
};

TEST(MergePartialsGpu, MatchesCpuMergeIncludingEmptySets) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  constexpr int kHeads = 32, kDim = 128;
  const float inf = std::numeric_limits<float>::infinity();
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 5.0f);
  std::vector<float> o_a(kHeads * kDim), o_b(kHeads * kDim), lse_a(kHeads), lse_b(kHeads);
  for (auto& x : o_a) x = dist(rng);
  for (auto& x : o_b) x = dist(rng);
  for (int h = 0; h < kHeads; ++h) {
    lse_a[h] = dist(rng) * 20;
    lse_b[h] = dist(rng) * 20;
  }
  // Heads 0-2: empty on one side, the other, and both (o = 0 for the empty set).
  lse_a[0] = -inf;
  lse_b[1] = -inf;
  lse_a[2] = lse_b[2] = -inf;
  for (int h : {0, 2}) std::fill_n(o_a.begin() + h * kDim, kDim, 0.0f);
  for (int h : {1, 2}) std::fill_n(o_b.begin() + h * kDim, kDim, 0.0f);

  DeviceBuffer<float> d_oa(o_a), d_ob(o_b), d_la(lse_a), d_lb(lse_b);
  RA_CUDA_CHECK(cuda::merge_partials(d_oa.ptr, d_la.ptr, d_ob.ptr, d_lb.ptr, kHeads, kDim, nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got_o = d_oa.to_host();
  const auto got_lse = d_la.to_host();

  for (int h = 0; h < kHeads; ++h) {
    float lse = lse_a[h];
    std::vector<float> o(o_a.begin() + h * kDim, o_a.begin() + (h + 1) * kDim);
    merge_into(lse, o.data(), lse_b[h], o_b.data() + h * kDim, kDim);
    if (std::isinf(lse)) {
      EXPECT_EQ(got_lse[h], lse) << "head " << h;
    } else {
      EXPECT_NEAR(got_lse[h], lse, 1e-5f * std::max(1.0f, std::fabs(lse))) << "head " << h;
    }
    for (int d = 0; d < kDim; ++d) {
      ASSERT_FALSE(std::isnan(got_o[h * kDim + d])) << "head " << h;
      ASSERT_NEAR(got_o[h * kDim + d], o[d], 1e-5f * std::max(1.0f, std::fabs(o[d]))) << "head " << h << " d " << d;
    }
  }
}

// An empty side (lse = −inf) may carry anything in its o: the GPU merge must not read it. With a
// empty the result is b, bit for bit; with b empty, a is left as it was, bit for bit.
TEST(MergePartialsGpu, EmptySideNeverLeaksNanOrInf) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  constexpr int kHeads = 6, kDim = 128;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> o_a(kHeads * kDim), o_b(kHeads * kDim);
  for (auto& x : o_a) x = dist(rng);
  for (auto& x : o_b) x = dist(rng);
  std::vector<float> lse_a = {-inf, -inf, 2.5f, -7.0f, -inf, 1.0f};
  std::vector<float> lse_b = {3.0f, -40.0f, -inf, -inf, -inf, 1.5f};
  auto fill = [&](std::vector<float>& o, int h, float x) { std::fill_n(o.begin() + h * kDim, kDim, x); };
  fill(o_a, 0, nan);  // a empty, o_a NaN        → (lse_b, o_b)
  for (int d = 0; d < kDim; ++d) o_a[1 * kDim + d] = d % 2 ? inf : -inf;  // a empty, o_a ±inf → (lse_b, o_b)
  fill(o_b, 2, nan);  // b empty, o_b NaN        → a untouched
  fill(o_b, 3, inf);  // b empty, o_b inf        → a untouched
  fill(o_a, 4, 0.0f);  // both empty, o_b NaN    → (−inf, 0)
  fill(o_b, 4, nan);

  DeviceBuffer<float> d_oa(o_a), d_ob(o_b), d_la(lse_a), d_lb(lse_b);
  RA_CUDA_CHECK(cuda::merge_partials(d_oa.ptr, d_la.ptr, d_ob.ptr, d_lb.ptr, kHeads, kDim, nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got_o = d_oa.to_host();
  const auto got_lse = d_la.to_host();

  auto same_bits = [&](const float* got, const float* want) {
    return std::memcmp(got, want, kDim * sizeof(float)) == 0;
  };
  for (int h : {0, 1}) {
    EXPECT_EQ(got_lse[h], lse_b[h]) << "head " << h;
    EXPECT_TRUE(same_bits(&got_o[h * kDim], &o_b[h * kDim])) << "head " << h << ": o must be o_b, copied";
  }
  for (int h : {2, 3}) {
    EXPECT_EQ(got_lse[h], lse_a[h]) << "head " << h;
    EXPECT_TRUE(same_bits(&got_o[h * kDim], &o_a[h * kDim])) << "head " << h << ": a must stay untouched";
  }
  EXPECT_EQ(got_lse[4], -inf);
  for (int d = 0; d < kDim; ++d) ASSERT_EQ(got_o[4 * kDim + d], 0.0f) << "d " << d;
  // Head 5: an ordinary merge, as the CPU does it.
  float lse = lse_a[5];
  std::vector<float> o(o_a.begin() + 5 * kDim, o_a.begin() + 6 * kDim);
  merge_into(lse, o.data(), lse_b[5], o_b.data() + 5 * kDim, kDim);
  EXPECT_NEAR(got_lse[5], lse, 1e-5f * std::max(1.0f, std::fabs(lse)));
  for (int d = 0; d < kDim; ++d) EXPECT_NEAR(got_o[5 * kDim + d], o[d], 1e-5f * std::max(1.0f, std::fabs(o[d])));
  for (float x : got_o) ASSERT_FALSE(std::isnan(x));
}

}  // namespace
}  // namespace ra
