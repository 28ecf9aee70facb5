// ra::cuda::gemv against the CPU backend's ops (ra::cpu::rms_norm, ra::cpu::linear, ra::cpu::silu_mul) on
// the same inputs: the weights are rounded to T first, so both sides multiply identical values and differ
// only in float32 summation order (and the norm's sum of squares).
//
// Tolerance: NMSE <= 1e-10 for f32 and bf16 alike. Reordered float32 sums of K terms give a relative error
// near 6e-8 · sqrt(K) per output at worst, an NMSE near 1e-12 for K = 14336; a dropped or doubled chunk,
// a wrong row, a missed tail element or an unnormalised input gives 1e-4 or more.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/splitmix64.h"
#include "gpu_worker/backend/cpu/cpu_ops.h"
#include "gpu_worker/backend/cuda/gemv.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using cuda::GemvEpilogue;
using gpu_test::DeviceArray;

constexpr float kEps = 1e-5f;
constexpr double kTolerance = 1e-10;

// Uniform in [-scale, scale): fast enough for the 525M weights of the LM head.
std::vector<float> uniform_values(size_t n, uint64_t seed, float scale) {
  SplitMix64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>((rng.unit() * 2.0 - 1.0) * scale);
  return v;
}

const char* epilogue_name(GemvEpilogue e) {
  switch (e) {
    case GemvEpilogue::kStore:
      return "store";
    case GemvEpilogue::kAddInto:
      return "add";
    case GemvEpilogue::kSwiGlu:
      return "swiglu";
  }
  return "?";
}

struct GemvCase {
  int rows;
  int cols;
  GemvEpilogue epilogue;
  bool norm;
  int w_offset = 0;  // elements between a 256-byte aligned allocation and W (misaligned rows)
};

int out_rows(const GemvCase& c) { return c.epilogue == GemvEpilogue::kSwiGlu ? c.rows / 2 : c.rows; }

// The CPU result for weights w (already rounded to T), input x, optional norm weights and the initial y.
std::vector<float> reference(const GemvCase& c, const std::vector<float>& w, const std::vector<float>& x,
                             const std::vector<float>& norm_w, const std::vector<float>& y0) {
  std::vector<float> xin = x;
  if (c.norm) cpu::rms_norm(x.data(), norm_w.data(), xin.data(), 1, c.cols, kEps);
  std::vector<float> acc(static_cast<size_t>(c.rows));
  cpu::linear(xin.data(), w.data(), acc.data(), 1, c.cols, c.rows);
  if (c.epilogue == GemvEpilogue::kAddInto) {
    for (size_t r = 0; r < acc.size(); ++r) acc[r] += y0[r];
  } else if (c.epilogue == GemvEpilogue::kSwiGlu) {
    std::vector<float> gate(acc.size() / 2), up(acc.size() / 2);
    for (size_t i = 0; i < gate.size(); ++i) {
      gate[i] = acc[2 * i];
      up[i] = acc[2 * i + 1];
    }
    cpu::silu_mul(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
    return gate;
  }
  return acc;
}

template <typename T>
void check_gemv(const GemvCase& c, uint64_t seed) {
  const size_t n = static_cast<size_t>(c.rows) * static_cast<size_t>(c.cols);
  // |W| <= 1/sqrt(cols) keeps every output O(1), as in a trained model.
  std::vector<float> w = uniform_values(n, seed, 1.0f / std::sqrt(static_cast<float>(c.cols)));
  std::vector<T> w_device(n + static_cast<size_t>(c.w_offset));  // value-initialised: zeros before the offset
  {
    const std::vector<T> rounded = gpu_test::to_type<T>(w);
    std::copy(rounded.begin(), rounded.end(), w_device.begin() + c.w_offset);
    w = gpu_test::to_floats<T>(rounded);  // the values the kernel multiplies
  }
  const std::vector<float> x = gpu_test::random_normal(static_cast<size_t>(c.cols), seed + 1);
  const std::vector<float> norm_w = gpu_test::random_normal(static_cast<size_t>(c.cols), seed + 2, 0.2f, 1.0f);
  const std::vector<float> y0 = gpu_test::random_normal(static_cast<size_t>(out_rows(c)), seed + 3);

  DeviceArray<T> d_w(w_device);
  DeviceArray<float> d_x(x), d_norm(norm_w);
  DeviceArray<float> d_y(static_cast<size_t>(out_rows(c)));  // NaN-poisoned: unwritten outputs show up
  if (c.epilogue == GemvEpilogue::kAddInto) d_y.upload(y0);
  RA_CUDA_CHECK(cuda::gemv<T>(d_w.get() + c.w_offset, d_x.get(), c.norm ? d_norm.get() : nullptr, kEps, d_y.get(),
                              c.rows, c.cols, c.epilogue, nullptr));
  const std::vector<float> got = d_y.download();
  const std::vector<float> want = reference(c, w, x, norm_w, y0);
  const std::string shape = "rows=" + std::to_string(c.rows) + " cols=" + std::to_string(c.cols) + " " +
                            epilogue_name(c.epilogue) + (c.norm ? "+norm" : "") +
                            (c.w_offset != 0 ? " misaligned" : "");
  EXPECT_OP("gemv", shape, gpu_test::type_name<T>(), got, want, kTolerance);
}

template <typename T>
void check_small_shapes() {
  uint64_t seed = 100;
  for (int rows : {1, 2, 7, 34, 100}) {
    for (int cols : {1, 3, 8, 16, 64, 100, 258, 1000}) {
      for (GemvEpilogue e : {GemvEpilogue::kStore, GemvEpilogue::kAddInto, GemvEpilogue::kSwiGlu}) {
        if (e == GemvEpilogue::kSwiGlu && rows % 2 != 0) continue;
        for (bool norm : {false, true}) check_gemv<T>({rows, cols, e, norm}, seed++);
      }
    }
  }
}

TEST(GemvGpu, SmallAndOddShapesF32) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_small_shapes<float>();
}

TEST(GemvGpu, SmallAndOddShapesBf16) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_small_shapes<cuda::bfloat16>();
}

// W one element past an aligned address: every row start is misaligned, so the scalar path runs even
// where cols is a multiple of 8.
TEST(GemvGpu, MisalignedWeightsTakeTheScalarPath) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int cols : {64, 4096}) {
    for (GemvEpilogue e : {GemvEpilogue::kStore, GemvEpilogue::kAddInto, GemvEpilogue::kSwiGlu}) {
      check_gemv<float>({18, cols, e, true, 1}, 7);
      check_gemv<cuda::bfloat16>({18, cols, e, true, 1}, 8);
    }
  }
}

// The decode step's products at Llama-3-8B geometry: q/k/v (norm), o (add), gate/up (norm + SwiGLU),
// down (add), LM head (norm). Many row groups per warp, x staged above 48 KB for cols = 14336.
TEST(GemvGpu, Llama3_8BShapes) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  using cuda::bfloat16;
  check_gemv<bfloat16>({6144, 4096, GemvEpilogue::kStore, true}, 11);
  check_gemv<bfloat16>({4096, 4096, GemvEpilogue::kAddInto, false}, 12);
  check_gemv<bfloat16>({28672, 4096, GemvEpilogue::kSwiGlu, true}, 13);
  check_gemv<bfloat16>({4096, 14336, GemvEpilogue::kAddInto, false}, 14);
  check_gemv<bfloat16>({128256, 4096, GemvEpilogue::kStore, true}, 15);
  check_gemv<float>({4096, 14336, GemvEpilogue::kAddInto, false}, 16);
  check_gemv<float>({6144, 4096, GemvEpilogue::kStore, true}, 17);
}

TEST(GemvGpu, RejectsBadArgumentsWithoutLaunching) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  DeviceArray<float> w(16), x(16), y(16);
  const auto call = [&](int rows, int cols, GemvEpilogue e) {
    return cuda::gemv<float>(w.get(), x.get(), nullptr, kEps, y.get(), rows, cols, e, nullptr);
  };
  EXPECT_EQ(call(3, 4, GemvEpilogue::kSwiGlu), cudaErrorInvalidValue);  // gate/up rows come in pairs
  EXPECT_EQ(call(2, 0, GemvEpilogue::kStore), cudaErrorInvalidValue);
  EXPECT_EQ(call(-1, 4, GemvEpilogue::kStore), cudaErrorInvalidValue);
  EXPECT_EQ(call(2, 1 << 20, GemvEpilogue::kStore), cudaErrorInvalidValue);  // x does not fit in shared memory
  EXPECT_EQ(call(0, 4, GemvEpilogue::kStore), cudaSuccess);                   // nothing to do
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace ra
