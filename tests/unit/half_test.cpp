#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/half.h"

namespace ra {
namespace {

TEST(Half, Bf16RoundTripsAndRoundsToNearestEven) {
  for (float f : {0.0f, 1.0f, -2.5f, 3.140625f, 65536.0f, -0x1p-100f}) {  // exactly representable
    EXPECT_EQ(to_float(to_bf16(f)), f);
  }
  EXPECT_EQ(to_float(to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(to_float(to_bf16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(to_float(to_bf16(1.0f + 0x1p-8f + 0x1p-20f)), 1.0078125f);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(to_float(to_bf16(-std::numeric_limits<float>::infinity())), -std::numeric_limits<float>::infinity());
}

TEST(Half, F16ExactValuesSubnormalsAndSpecials) {
  EXPECT_EQ(to_float(f16{0x3c00}), 1.0f);
  EXPECT_EQ(to_float(f16{0xc000}), -2.0f);
  EXPECT_EQ(to_float(f16{0x7bff}), 65504.0f);
  EXPECT_EQ(to_float(f16{0x0001}), 0x1p-24f);  // smallest subnormal
  EXPECT_EQ(to_float(f16{0x7c00}), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(to_float(f16{0x7e00})));
  // Every finite f16 round-trips through float exactly.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const f16 h{static_cast<uint16_t>(bits)};
    const float f = to_float(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(to_f16(f).bits, h.bits) << std::hex << bits;
  }
  EXPECT_EQ(to_f16(1e6f).bits, 0x7c00);  // overflow to inf
}

}  // namespace
}  // namespace ra
