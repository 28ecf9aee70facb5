// Element traits of the KV dtypes: the widening every scorer uses is exact, and equals the reference
// conversions of common/half.h for every 16-bit pattern.

#include "cpu_retriever/dot.h"
#include "cpu_retriever/kv_dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <vector>

namespace ra::retriever {
namespace {

TEST(KvDtype, SixteenBitWideningMatchesTheReferenceForEveryPattern) {
  for (uint32_t b = 0; b <= 0xffffu; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    ASSERT_EQ(std::bit_cast<uint32_t>(F16Elem::widen(bits)), std::bit_cast<uint32_t>(to_float(f16{bits})))
        << "f16 0x" << std::hex << b;
    ASSERT_EQ(std::bit_cast<uint32_t>(Bf16Elem::widen(bits)), std::bit_cast<uint32_t>(to_float(bf16{bits})))
        << "bf16 0x" << std::hex << b;
  }
}

// A score over a 16-bit row is dot_f32 over its widened copy, bit for bit: indexes over the KV store's
// rows rank keys exactly as they would over a float32 copy of them.
TEST(KvDtype, ScoresOverSixteenBitRowsEqualScoresOverTheirWidening) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.f, 2.f);
  for (int64_t dim : {1, 7, 8, 64, 100, 128}) {
    std::vector<float> q(dim), a(dim), b(dim);
    std::vector<uint16_t> ra(dim), rb(dim);
    for (int trial = 0; trial < 20; ++trial) {
      for (int64_t j = 0; j < dim; ++j) {
        q[j] = g(rng);
        ra[j] = F16Elem::narrow(g(rng));
        rb[j] = F16Elem::narrow(g(rng));
        a[j] = F16Elem::widen(ra[j]);
        b[j] = F16Elem::widen(rb[j]);
      }
      EXPECT_EQ(dot_row<F16Elem>(q.data(), ra.data(), dim), dot_f32(q.data(), a.data(), dim)) << "dim " << dim;
      EXPECT_EQ(dot_rows<F16Elem>(ra.data(), rb.data(), dim), dot_f32(a.data(), b.data(), dim)) << "dim " << dim;
      for (int64_t j = 0; j < dim; ++j) {
        ra[j] = Bf16Elem::narrow(q[j] * 3.f);
        a[j] = Bf16Elem::widen(ra[j]);
      }
      EXPECT_EQ(dot_row<Bf16Elem>(q.data(), ra.data(), dim), dot_f32(q.data(), a.data(), dim)) << "dim " << dim;
    }
  }
}

// Where the CPU has F16C, f16 rows are widened by hardware: the results must be bitwise the portable
// loop's, for every length (tails included) and for rows with infinities.
TEST(KvDtype, HardwareF16WideningScoresBitwiseAsThePortableLoop) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "this CPU has no F16C: only the portable loop runs";
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.f, 3.f);
  for (int64_t dim = 1; dim <= 136; ++dim) {
    std::vector<float> q(dim);
    std::vector<uint16_t> a(dim), b(dim);
    for (int trial = 0; trial < 5; ++trial) {
      for (int64_t j = 0; j < dim; ++j) {
        q[j] = g(rng);
        a[j] = F16Elem::narrow(g(rng));
        b[j] = F16Elem::narrow(trial == 4 && j == dim / 2 ? 1e6f : g(rng));  // one row with an infinity
      }
      const float hw = dot_row_f16c(q.data(), b.data(), dim), sw = dot_row_portable<F16Elem>(q.data(), b.data(), dim);
      ASSERT_EQ(std::bit_cast<uint32_t>(hw), std::bit_cast<uint32_t>(sw)) << "dim " << dim << " trial " << trial;
      const float hw2 = dot_rows_f16c(a.data(), b.data(), dim), sw2 = dot_rows_portable<F16Elem>(a.data(), b.data(), dim);
      ASSERT_EQ(std::bit_cast<uint32_t>(hw2), std::bit_cast<uint32_t>(sw2)) << "dim " << dim << " trial " << trial;
    }
  }
}

}  // namespace
}  // namespace ra::retriever
