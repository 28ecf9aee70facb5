// Element traits of the KV dtypes: the widening every scorer uses is exact, and equals the reference
// conversions of common/half.h for every 16-bit pattern.

#include "cpu_retriever/dot.h"
#include "cpu_retriever/kv_dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
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

// Bit patterns of a float, for comparisons that also hold for NaN results.
uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }

// Where the CPU has AVX2 and F16C, every dtype is scored by the 256-bit loops of dot_x86.h: the results
// must be bitwise the portable loop's, for every length (tails included) and for rows with infinities
// and NaN.
TEST(KvDtype, SimdScorersGiveThePortableLoopsBitsForEveryDtype) {
  if (!cpu_has_simd_dot()) GTEST_SKIP() << "this CPU has no AVX2 and F16C: only the portable loops run";
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.f, 3.f);
  for (int64_t dim = 1; dim <= 136; ++dim) {
    std::vector<float> q(dim), a32(dim), b32(dim);
    std::vector<uint16_t> a16(dim), b16(dim), abf(dim), bbf(dim);
    for (int trial = 0; trial < 6; ++trial) {
      for (int64_t j = 0; j < dim; ++j) {
        q[j] = g(rng);
        a32[j] = g(rng);
        b32[j] = g(rng);
        if (j == dim / 2 && trial == 4) b32[j] = 1e6f;  // f16 overflows to infinity here
        if (j == dim - 1 && trial == 5) b32[j] = std::numeric_limits<float>::infinity();  // and everything: inf, NaN
        a16[j] = F16Elem::narrow(a32[j]);
        b16[j] = F16Elem::narrow(b32[j]);
        abf[j] = Bf16Elem::narrow(a32[j]);
        bbf[j] = Bf16Elem::narrow(b32[j]);
      }
      const std::string where = "dim " + std::to_string(dim) + " trial " + std::to_string(trial);
      ASSERT_EQ(bits(dot_row_f32_avx2(q.data(), b32.data(), dim)),
                bits(dot_row_portable<F32Elem>(q.data(), b32.data(), dim))) << "f32 " << where;
      ASSERT_EQ(bits(dot_row_f32_avx2(a32.data(), b32.data(), dim)),
                bits(dot_rows_portable<F32Elem>(a32.data(), b32.data(), dim))) << "f32 rows " << where;
      ASSERT_EQ(bits(dot_row_bf16_avx2(q.data(), bbf.data(), dim)),
                bits(dot_row_portable<Bf16Elem>(q.data(), bbf.data(), dim))) << "bf16 " << where;
      ASSERT_EQ(bits(dot_rows_bf16_avx2(abf.data(), bbf.data(), dim)),
                bits(dot_rows_portable<Bf16Elem>(abf.data(), bbf.data(), dim))) << "bf16 rows " << where;
      ASSERT_EQ(bits(dot_row_f16_avx2(q.data(), b16.data(), dim)),
                bits(dot_row_portable<F16Elem>(q.data(), b16.data(), dim))) << "f16 " << where;
      ASSERT_EQ(bits(dot_rows_f16_avx2(a16.data(), b16.data(), dim)),
                bits(dot_rows_portable<F16Elem>(a16.data(), b16.data(), dim))) << "f16 rows " << where;
    }
  }
}

// Flat scans and graph hops score four rows per call: each result must be bitwise the portable
// single-row loop's, for every dtype and length.
TEST(KvDtype, FourRowsAtOnceScoreBitwiseAsOneByOne) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.f, 3.f);
  auto check = [&](auto elem, int64_t dim) {
    using E = decltype(elem);
    std::vector<float> q(dim);
    std::vector<std::vector<typename E::T>> rows(4, std::vector<typename E::T>(dim));
    for (int64_t j = 0; j < dim; ++j) q[j] = g(rng);
    for (auto& row : rows) {
      for (int64_t j = 0; j < dim; ++j) row[j] = E::narrow(g(rng));
    }
    const typename E::T* ptrs[4] = {rows[0].data(), rows[1].data(), rows[2].data(), rows[3].data()};
    float out[4];
    dot_row_x4<E>(q.data(), ptrs, dim, out);
    for (int r = 0; r < 4; ++r) {
      ASSERT_EQ(bits(out[r]), bits(dot_row_portable<E>(q.data(), ptrs[r], dim)))
          << "dtype " << static_cast<int>(E::kDtype) << " dim " << dim << " row " << r;
    }
  };
  for (int64_t dim = 1; dim <= 136; ++dim) {
    check(F32Elem{}, dim);
    check(Bf16Elem{}, dim);
    check(F16Elem{}, dim);
  }
}

// The graph build's pruning scores one stored key against four widened keys (dot_widened_x4): each result
// must be bitwise the portable loop of the stored key widened against the other's row, i.e. what
// dot_row_x4 gives the other way round, for every dtype that widens exactly and every length.
TEST(KvDtype, OneRowAgainstFourWidenedRowsScoresAsTheOtherWayRound) {
  std::mt19937 rng(13);
  std::normal_distribution<float> g(0.f, 3.f);
  auto check = [&](auto elem, int64_t dim) {
    using E = decltype(elem);
    std::vector<typename E::T> row(dim);
    std::vector<std::vector<typename E::T>> others(4, std::vector<typename E::T>(dim));
    std::vector<std::vector<float>> wide(4, std::vector<float>(dim));
    std::vector<float> row_wide(dim);
    for (int64_t j = 0; j < dim; ++j) {
      row[j] = E::narrow(g(rng));
      row_wide[j] = E::widen(row[j]);
    }
    for (int r = 0; r < 4; ++r) {
      for (int64_t j = 0; j < dim; ++j) {
        others[r][j] = E::narrow(g(rng));
        wide[r][j] = E::widen(others[r][j]);
      }
    }
    const float* wide_ptrs[4] = {wide[0].data(), wide[1].data(), wide[2].data(), wide[3].data()};
    float out[4];
    dot_widened_x4<E>(row.data(), wide_ptrs, dim, out);
    for (int r = 0; r < 4; ++r) {
      ASSERT_EQ(bits(out[r]), bits(dot_row_portable<E>(row_wide.data(), others[r].data(), dim)))
          << "dtype " << static_cast<int>(E::kDtype) << " dim " << dim << " row " << r;
    }
  };
  for (int64_t dim = 1; dim <= 136; ++dim) {
    check(F32Elem{}, dim);
    check(Bf16Elem{}, dim);
    check(F16Elem{}, dim);
  }
}

// The graph's 8-bit navigation rows (navigation_keys.h) are scored by the same eight-lane loops: the
// SIMD single-row and four-row kernels must give the portable loop's bits for every length.
TEST(KvDtype, Int8NavigationRowsScoreBitwiseAsThePortableLoop) {
  std::mt19937 rng(13);
  std::normal_distribution<float> g(0.f, 3.f);
  std::uniform_int_distribution<int> code(-127, 127);
  for (int64_t dim = 1; dim <= 136; ++dim) {
    std::vector<float> q(dim);
    std::vector<std::vector<int8_t>> rows(4, std::vector<int8_t>(dim));
    for (int64_t j = 0; j < dim; ++j) q[j] = g(rng);
    for (auto& row : rows) {
      for (int64_t j = 0; j < dim; ++j) row[j] = static_cast<int8_t>(code(rng));
    }
    rows[1][dim - 1] = -127;  // the extremes
    rows[2][0] = 127;
    const int8_t* ptrs[4] = {rows[0].data(), rows[1].data(), rows[2].data(), rows[3].data()};
    float out[4];
    dot_row_x4<I8Elem>(q.data(), ptrs, dim, out);
    for (int r = 0; r < 4; ++r) {
      const float portable = dot_row_portable<I8Elem>(q.data(), ptrs[r], dim);
      ASSERT_EQ(bits(out[r]), bits(portable)) << "dim " << dim << " row " << r;
      ASSERT_EQ(bits(dot_row<I8Elem>(q.data(), ptrs[r], dim)), bits(portable)) << "dim " << dim << " row " << r;
      double ref = 0;  // and the value: q · codes
      for (int64_t j = 0; j < dim; ++j) ref += static_cast<double>(q[j]) * rows[r][j];
      ASSERT_NEAR(portable, ref, 1e-4 * (1 + std::abs(ref))) << "dim " << dim;
    }
  }
}

}  // namespace
}  // namespace ra::retriever
