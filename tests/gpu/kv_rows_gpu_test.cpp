// K and V coded on the GPU in the forms the retrievers take (gpu_worker/backend/cuda/qkv_gather.h:
// encode_kv_rows) against the CPU's coders, bit for bit: int8 rows against quantise_q8_row (common/
// q8_row.h) on random rows, rows of exact ties (x / scale = k + 1/2, rounded to even), an all-zero row
// and rows too small for a normal scale; bf16 rows against common/half.h's to_bf16 (NaN and the
// rounding carry included) and a bf16 cache's own bits; float32 rows against the values. A row int8
// cannot code (inf, NaN) is reported as the first such (token, kv head).

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "common/half.h"
#include "common/q8_row.h"
#include "common/wire_rows.h"
#include "gpu_worker/backend/cuda/qkv_gather.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using gpu_test::DeviceArray;

constexpr int kHeads = 3, kCapacity = 40, kFirst = 5, kTokens = 29;

// A [kHeads][kCapacity][head_dim] cache of float values, every slot filled: random rows, and among the
// chunk's rows exact ties, an all-zero row, rows of subnormal size and rows of bf16's largest values.
std::vector<float> test_cache(int head_dim, uint64_t seed) {
  std::vector<float> c = gpu_test::random_normal(static_cast<size_t>(kHeads) * kCapacity * head_dim, seed, 2.5f);
  auto row = [&](int g, int i) { return c.data() + (static_cast<size_t>(g) * kCapacity + kFirst + i) * head_dim; };
  for (int i = 0; i < kTokens; i += 4) {  // peak 31.75: scale 0.25 exactly; the rest k.5 steps of it
    float* r = row(i % kHeads, i);
    r[0] = -31.75f;
    for (int d = 1; d < head_dim; ++d) r[d] = (static_cast<float>(d % 11) - 5.0f + 0.5f) * 0.25f;
  }
  std::fill_n(row(1, 2), head_dim, 0.0f);  // scale 0, codes 0
  for (int d = 0; d < head_dim; ++d) row(2, 3)[d] = static_cast<float>(d + 1) * 1e-42f;  // subnormal peak and scale
  for (int d = 0; d < head_dim; ++d) row(0, 6)[d] = (d % 2 ? -1.0f : 1.0f) * 3.3e38f;   // near bf16's max
  return c;
}

// The chunk's rows, [kTokens][kHeads][head_dim], as the CPU's coders see them (values of the cache).
std::vector<float> chunk_rows(const std::vector<float>& cache, int head_dim) {
  std::vector<float> x(static_cast<size_t>(kTokens) * kHeads * head_dim);
  for (int i = 0; i < kTokens; ++i) {
    for (int g = 0; g < kHeads; ++g) {
      std::copy_n(cache.data() + (static_cast<size_t>(g) * kCapacity + kFirst + i) * head_dim, head_dim,
                  x.data() + (static_cast<size_t>(i) * kHeads + g) * head_dim);
    }
  }
  return x;
}

// The GPU's rows of the cache (type T) in form `rows`, and its error word.
template <typename T>
std::vector<std::byte> gpu_rows(const std::vector<T>& cache, int head_dim, WireRows rows, unsigned long long* bad) {
  DeviceArray<T> d_cache(cache);
  const size_t bytes = static_cast<size_t>(kTokens) * kHeads * wire_row_bytes(rows, head_dim);
  DeviceArray<std::byte> d_out(bytes);
  DeviceArray<unsigned long long> d_bad(std::vector<unsigned long long>{cuda::kNoBadRow});
  RA_CUDA_CHECK(cuda::encode_kv_rows<T>(d_cache.get(), kCapacity, kFirst, kTokens, kHeads, head_dim, rows, d_out.get(),
                                        d_bad.get(), nullptr));
  *bad = d_bad.download()[0];
  return d_out.download();
}

// The CPU's rows (common/wire_rows.h: to_bf16, quantise_q8_row).
std::vector<std::byte> cpu_rows(const std::vector<float>& x, int head_dim, WireRows rows) {
  std::vector<std::byte> out(static_cast<size_t>(kTokens) * kHeads * wire_row_bytes(rows, head_dim));
  EXPECT_LT(encode_wire_rows(rows, x.data(), static_cast<int64_t>(kTokens) * kHeads, head_dim, out.data()), 0);
  return out;
}

// The first differing row, or "".
std::string first_difference(const std::vector<std::byte>& got, const std::vector<std::byte>& want, size_t row_bytes) {
  if (got.size() != want.size()) return "sizes " + std::to_string(got.size()) + " and " + std::to_string(want.size());
  for (size_t r = 0; r * row_bytes < got.size(); ++r) {
    if (std::memcmp(got.data() + r * row_bytes, want.data() + r * row_bytes, row_bytes) != 0) {
      return "row " + std::to_string(r) + " (token " + std::to_string(r / kHeads) + ", kv head " +
             std::to_string(r % kHeads) + ")";
    }
  }
  return "";
}

TEST(KvRowsGpu, Int8RowsAreTheCpuRulesBitForBit) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int head_dim : {128, 64, 40, 6}) {  // 40 and 6: lanes past the row, scales at odd offsets
    const std::vector<float> cache = test_cache(head_dim, 100 + head_dim);
    const std::vector<float> x = chunk_rows(cache, head_dim);
    unsigned long long bad = 0;
    const size_t rb = wire_row_bytes(WireRows::kQ8, head_dim);
    const std::vector<std::byte> f32 = gpu_rows(cache, head_dim, WireRows::kQ8, &bad);
    EXPECT_EQ(bad, cuda::kNoBadRow);
    EXPECT_EQ(first_difference(f32, cpu_rows(x, head_dim, WireRows::kQ8), rb), "") << "float cache, dim " << head_dim;
    // The all-zero row: scale 0, codes 0. The tie rows: scale 0.25, codes rounded half to even.
    const auto* zero = reinterpret_cast<const int8_t*>(f32.data() + (2 * kHeads + 1) * rb);
    EXPECT_EQ(q8_row_scale(zero, head_dim), 0.0f);
    const auto* ties = reinterpret_cast<const int8_t*>(f32.data() + 0 * rb);
    EXPECT_EQ(q8_row_scale(ties, head_dim), 0.25f);
    EXPECT_EQ(ties[0], -127);
    EXPECT_EQ(ties[1], -4) << "-3.5 rounds to even";
    EXPECT_EQ(ties[2], -2) << "-2.5 rounds to even";

    // A bf16 cache: the CPU codes the widened values.
    const std::vector<__nv_bfloat16> cache16 = gpu_test::to_bf16(cache);
    const std::vector<float> x16 = chunk_rows(gpu_test::from_bf16(cache16), head_dim);
    const std::vector<std::byte> b16 = gpu_rows(cache16, head_dim, WireRows::kQ8, &bad);
    EXPECT_EQ(bad, cuda::kNoBadRow);
    EXPECT_EQ(first_difference(b16, cpu_rows(x16, head_dim, WireRows::kQ8), rb), "") << "bf16 cache, dim " << head_dim;
  }
}

TEST(KvRowsGpu, Bf16AndFloatRowsAreTheCpusBitForBit) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int head_dim = 64;
  std::vector<float> cache = test_cache(head_dim, 7);
  // Rounding edges: a tie to even each way, a carry into the exponent, NaN with a low payload only, -0, inf.
  float* r = cache.data() + static_cast<size_t>(kFirst + 1) * head_dim;
  const uint32_t edges[] = {0x3f808000u, 0x3f818000u, 0x3fffffffu, 0x7f800001u, 0x80000000u, 0x7f800000u, 0xff7fffffu};
  for (size_t e = 0; e < std::size(edges); ++e) std::memcpy(&r[e], &edges[e], sizeof(float));
  const std::vector<float> x = chunk_rows(cache, head_dim);
  unsigned long long bad = 0;
  const std::vector<std::byte> bf16 = gpu_rows(cache, head_dim, WireRows::kBF16, &bad);
  EXPECT_EQ(first_difference(bf16, cpu_rows(x, head_dim, WireRows::kBF16), 2 * head_dim), "");
  EXPECT_EQ(bad, cuda::kNoBadRow);  // bf16 carries NaN and inf
  const std::vector<std::byte> f32 = gpu_rows(cache, head_dim, WireRows::kF32, &bad);
  EXPECT_EQ(first_difference(f32, cpu_rows(x, head_dim, WireRows::kF32), 4 * head_dim), "");
  // A bf16 cache: its own bits, and its values widened.
  const std::vector<__nv_bfloat16> cache16 = gpu_test::to_bf16(cache);
  const std::vector<float> x16 = chunk_rows(gpu_test::from_bf16(cache16), head_dim);
  EXPECT_EQ(first_difference(gpu_rows(cache16, head_dim, WireRows::kBF16, &bad),
                             cpu_rows(x16, head_dim, WireRows::kBF16), 2 * head_dim), "");
  EXPECT_EQ(first_difference(gpu_rows(cache16, head_dim, WireRows::kF32, &bad), cpu_rows(x16, head_dim, WireRows::kF32),
                             4 * head_dim), "");
}

TEST(KvRowsGpu, AnInt8RowHoldingInfOrNanIsReportedAsTheFirstSuch) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int head_dim = 32;
  std::vector<float> cache = test_cache(head_dim, 9);
  auto at = [&](int g, int i, int d) -> float& {
    return cache[(static_cast<size_t>(g) * kCapacity + kFirst + i) * head_dim + d];
  };
  at(0, 17, 3) = std::numeric_limits<float>::quiet_NaN();
  at(2, 9, 31) = -std::numeric_limits<float>::infinity();  // row 9 * 3 + 2 = 29: the first
  at(1, 12, 0) = std::numeric_limits<float>::infinity();
  // Outside the chunk's slots nothing counts.
  cache[(static_cast<size_t>(1) * kCapacity + kFirst - 1) * head_dim] = std::numeric_limits<float>::quiet_NaN();
  unsigned long long bad = 0;
  gpu_rows(cache, head_dim, WireRows::kQ8, &bad);
  EXPECT_EQ(bad, 9u * kHeads + 2);
  const std::vector<__nv_bfloat16> cache16 = gpu_test::to_bf16(cache);
  gpu_rows(cache16, head_dim, WireRows::kQ8, &bad);
  EXPECT_EQ(bad, 9u * kHeads + 2);
}

}  // namespace
}  // namespace ra
