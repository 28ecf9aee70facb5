#pragma once
// Test payloads for the transports: n bytes of splitmix64 words from `seed` (the last word truncated),
// the same on both sides of a channel, so a receiver checks a message without it being sent twice.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/splitmix64.h"

namespace ra::test {

inline std::vector<std::byte> byte_pattern(std::size_t n, uint64_t seed) {
  std::vector<std::byte> bytes(n);
  SplitMix64 rng(seed);
  for (std::size_t i = 0; i < n; i += 8) {
    const uint64_t word = rng.next();
    std::memcpy(bytes.data() + i, &word, std::min<std::size_t>(8, n - i));
  }
  return bytes;
}

}  // namespace ra::test
