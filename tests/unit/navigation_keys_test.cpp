// NavigationKeys: the 8-bit per-channel codes a graph search walks (navigation_keys.h). The codes
// reconstruct every build key within half a step per channel, a RoPE pair shares the scale of its
// largest norm (so a rotated key stays in range), later keys saturate beyond it, and a scaled query's
// score over a code is within the bound the steps imply of the exact one.

#include "common/error.h"
#include "cpu_retriever/navigation_keys.h"
#include "cpu_retriever/row_arena.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace ra::retriever {
namespace {

// Keys whose channels differ in range by 1000x, like the outlier channels of real keys.
std::vector<float> spread_keys(int64_t n, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> keys(static_cast<size_t>(n * dim));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) keys[i * dim + d] = g(rng) * std::pow(10.f, static_cast<float>(d % 4) - 1.f);
  }
  return keys;
}

KeyRows rows_of(const RowArena& arena) { return KeyRows{arena.data(), arena.max_rows(), nullptr, arena.dim(), arena.dtype()}; }

TEST(NavigationKeys, CodesReconstructEveryBuildKeyWithinHalfAStep) {
  const int64_t n = 3000, dim = 40;
  const std::vector<float> keys = spread_keys(n, dim, 1);
  RowArena arena(dim, n + 10);
  arena.append(keys.data(), n);
  const NavigationKeys nav(rows_of(arena), n, n + 10);
  ASSERT_EQ(nav.size(), n);
  const KeyRows codes = nav.rows();
  EXPECT_EQ(codes.dtype, KvDtype::kI8);
  for (int64_t i = 0; i < n; ++i) {
    const auto* c = codes.row_as<I8Elem>(static_cast<uint32_t>(i));
    for (int64_t d = 0; d < dim; ++d) {
      const float s = nav.scales()[d];
      ASSERT_LE(std::abs(c[d]), 127);
      ASSERT_LE(std::abs(static_cast<float>(c[d]) * s - keys[i * dim + d]), 0.5f * s * (1 + 1e-5f)) << i << " " << d;
    }
  }
  // Each pair's scale is its largest norm / 127.
  for (int64_t d = 0; d < dim / 2; ++d) {
    float peak = 0;
    for (int64_t i = 0; i < n; ++i) peak = std::max(peak, std::hypot(keys[i * dim + d], keys[i * dim + d + dim / 2]));
    EXPECT_FLOAT_EQ(nav.scales()[d], peak / 127.f);
    EXPECT_EQ(nav.scales()[d + dim / 2], nav.scales()[d]);
  }
}

// The build's team (threads) changes nothing: scales and codes are those of one thread, and each code
// is nearbyint(key / scale) clamped to [-127, 127], as a scalar loop gives it (NaN codes as 0).
TEST(NavigationKeys, AnyTeamGivesTheScalarCodes) {
  const int64_t n = 9000, dim = 16;  // past the 4096 rows below which the build stays on one thread
  std::vector<float> keys = spread_keys(n, dim, 3);
  keys[5 * dim + 1] = std::numeric_limits<float>::quiet_NaN();
  keys[6 * dim + 2] = 2.5f * 1e6f;  // saturates
  RowArena arena(dim, n);
  arena.append(keys.data(), n);
  const NavigationKeys one(rows_of(arena), n, n, 1), three(rows_of(arena), n, n, 3);
  for (int64_t d = 0; d < dim; ++d) EXPECT_EQ(one.scales()[d], three.scales()[d]) << d;
  ASSERT_TRUE(std::equal(one.codes().begin(), one.codes().end(), three.codes().begin(), three.codes().end()));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) {
      const float c = std::nearbyint(keys[i * dim + d] * (1.0f / one.scales()[d]));
      const int want = std::isnan(c) ? 0 : static_cast<int>(std::clamp(c, -127.0f, 127.0f));
      ASSERT_EQ(one.codes()[static_cast<size_t>(i * dim + d)], want) << i << " " << d;
    }
  }
}

// Any rotation of a RoPE pair keeps a build key within the codes' range: nothing saturates.
TEST(NavigationKeys, RotatedKeysStayInRange) {
  const int64_t n = 500, dim = 16, half = dim / 2;
  const std::vector<float> keys = spread_keys(n, dim, 5);
  RowArena arena(dim, 2 * n);
  arena.append(keys.data(), n);
  NavigationKeys nav(rows_of(arena), n, 2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const double angle = 0.37 * static_cast<double>(i);
    std::vector<float> r(dim);
    for (int64_t d = 0; d < half; ++d) {
      const float x = keys[i * dim + d], y = keys[i * dim + d + half];
      r[d] = static_cast<float>(x * std::cos(angle) - y * std::sin(angle));
      r[d + half] = static_cast<float>(x * std::sin(angle) + y * std::cos(angle));
    }
    arena.append(r.data());
    nav.append(rows_of(arena), static_cast<uint32_t>(n + i));
    const int8_t* c = nav.rows().row_as<I8Elem>(static_cast<uint32_t>(n + i));
    for (int64_t d = 0; d < dim; ++d) {
      ASSERT_LE(std::abs(static_cast<float>(c[d]) * nav.scales()[d] - r[d]), 0.5f * nav.scales()[d] * 1.0001f)
          << "key " << i << " channel " << d;
    }
  }
}

TEST(NavigationKeys, ScaledQueryScoresAreWithinTheStepBoundOfTheExactScores) {
  const int64_t n = 2000, dim = 64;
  const std::vector<float> keys = spread_keys(n, dim, 2);
  const std::vector<float> queries = spread_keys(50, dim, 3);
  RowArena arena(dim, n);
  arena.append(keys.data(), n);
  const NavigationKeys nav(rows_of(arena), n, n);
  std::vector<float> scaled(dim);
  for (int64_t t = 0; t < 50; ++t) {
    const float* q = queries.data() + t * dim;
    nav.scale_query(q, scaled.data());
    double bound = 0;  // sum |q_d| s_d / 2: every channel off by at most half its step
    for (int64_t d = 0; d < dim; ++d) bound += std::abs(q[d]) * nav.scales()[d] / 2;
    for (int64_t i = 0; i < n; i += 7) {
      double exact = 0;
      for (int64_t d = 0; d < dim; ++d) exact += static_cast<double>(q[d]) * keys[i * dim + d];
      const float approx = nav.rows().score(scaled.data(), static_cast<uint32_t>(i));
      ASSERT_LE(std::abs(approx - exact), bound * 1.001 + 1e-3) << "query " << t << " key " << i;
    }
  }
}

TEST(NavigationKeys, LaterKeysSaturateAndNonFiniteValuesCodeAsZero) {
  const int64_t dim = 7;  // odd: each channel its own range
  std::vector<float> keys(2 * dim, 0.f);
  for (int64_t d = 0; d < dim; ++d) keys[d] = 1.f + static_cast<float>(d);  // channel d's range: 1 + d
  keys[dim + 3] = std::numeric_limits<float>::infinity();                    // ignored by the scales
  RowArena arena(dim, 10);
  arena.append(keys.data(), 2);
  NavigationKeys nav(rows_of(arena), 2, 10);
  EXPECT_FLOAT_EQ(nav.scales()[3], 4.f / 127.f);
  EXPECT_EQ(nav.rows().row_as<I8Elem>(1)[3], 127);  // inf saturates
  std::vector<float> later(dim, 0.f);
  later[0] = -50.f;  // 50x channel 0's range
  later[1] = std::numeric_limits<float>::quiet_NaN();
  later[2] = 1.5f;
  arena.append(later.data());
  nav.append(rows_of(arena), 2);
  const int8_t* c = nav.rows().row_as<I8Elem>(2);
  EXPECT_EQ(c[0], -127);
  EXPECT_EQ(c[1], 0);
  EXPECT_EQ(c[2], static_cast<int8_t>(std::nearbyint(1.5f / (3.f / 127.f))));
  EXPECT_THROW(nav.append(rows_of(arena), 5), Error);  // not the next row
}

TEST(NavigationKeys, AZeroChannelCodesAsZeros) {
  const int64_t dim = 4;
  std::vector<float> keys{1.f, 0.f, -2.f, 0.f, 3.f, 0.f, 0.5f, 0.f};  // pair (1, 3) is zero
  RowArena arena(dim, 2);
  arena.append(keys.data(), 2);
  const NavigationKeys nav(rows_of(arena), 2, 2);
  EXPECT_EQ(nav.scales()[1], 1.f);
  EXPECT_EQ(nav.scales()[3], 1.f);
  EXPECT_EQ(nav.rows().row_as<I8Elem>(0)[1], 0);
  EXPECT_EQ(nav.rows().row_as<I8Elem>(1)[3], 0);
}

}  // namespace
}  // namespace ra::retriever
