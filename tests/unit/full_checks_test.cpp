// The full check's enumeration (common/full_checks.h): the static set and the offloaded ranges must
// mark every position of [0, p] exactly once.
#include "common/full_checks.h"

#include <gtest/gtest.h>

#include <vector>

namespace {

using ra::HeldRange;
using ra::partition_error;

TEST(FullChecks, SinksWindowAndTheOffloadedRangePartitionThePrefix) {
  std::vector<uint8_t> marks;
  // p = 99, sinks 8, window 16: static [0, 8) and [84, 99], offloaded [8, 84).
  const HeldRange held{8, 76};
  EXPECT_EQ(partition_error(99, 8, 16, std::span(&held, 1), marks), "");
  // Before the window fills nothing is offloaded.
  EXPECT_EQ(partition_error(10, 8, 16, {}, marks), "");
  const HeldRange none{8, 0};
  EXPECT_EQ(partition_error(23, 8, 16, std::span(&none, 1), marks), "");
  // Two ranges that continue each other (the shards' rows, then a serving session's tokens).
  const HeldRange two[] = {{8, 50}, {58, 26}};
  EXPECT_EQ(partition_error(99, 8, 16, two, marks), "");
}

TEST(FullChecks, AGapARepeatOrAPositionPastTheStepIsNamed) {
  std::vector<uint8_t> marks;
  const HeldRange short_by_one{8, 75};
  EXPECT_EQ(partition_error(99, 8, 16, std::span(&short_by_one, 1), marks),
            "position 83 of [0, 99] is held by no set (sinks 8, window 16)");
  const HeldRange one_too_many{8, 77};
  EXPECT_EQ(partition_error(99, 8, 16, std::span(&one_too_many, 1), marks),
            "position 84 is held twice: by the window [84, 99] and by offloaded range 0 [8, 85)");
  const HeldRange starts_in_the_sinks{7, 77};
  EXPECT_EQ(partition_error(99, 8, 16, std::span(&starts_in_the_sinks, 1), marks),
            "position 7 is held twice: by the sinks [0, 8) and by offloaded range 0 [7, 84)");
  const HeldRange past{120, 2};
  EXPECT_NE(partition_error(99, 8, 16, std::span(&past, 1), marks).find("past the step's position 99"),
            std::string::npos);
}

TEST(FullChecks, RA_FULL_CHECKSDecides) {
  // Read once per process: the test binary runs without it (CTest), so the build type decides.
#ifdef NDEBUG
  const bool by_build = false;
#else
  const bool by_build = true;
#endif
  const char* env = std::getenv("RA_FULL_CHECKS");
  if (env == nullptr || *env == '\0') EXPECT_EQ(ra::full_checks_enabled(), by_build);
}

}  // namespace
