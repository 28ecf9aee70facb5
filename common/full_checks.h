#pragma once
// Full run-time checks (issue 20 item 2). The always-on checks keep the GPU's static set and the
// retrievers' offloaded set disjoint and covering [0, p] in O(1) per step and layer (arithmetic on
// counts: RetrieverService::check_positions, RetrievalClient::finish). The full checks verify the same
// thing by enumeration and look inside the retrievers: every position of [0, p] marked by the set that
// holds it, exactly once, and every shard's rows covered by its indexes and flat tail. They cost
// O(context) per step and layer on the worker, so they are on in debug builds only; RA_FULL_CHECKS=1
// turns them on in any build (the tests do), RA_FULL_CHECKS=0 off.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ra {

// Read once from RA_FULL_CHECKS; without it, true in builds without NDEBUG.
bool full_checks_enabled();

// A set of offloaded positions [first, first + count) that one holder (e.g. a retriever) reports.
struct HeldRange {
  int64_t first = 0;
  int64_t count = 0;
};

// Marks every position of [0, position] held by the static set (sinks [0, S), window [max(S, p + 1 − W),
// p]) and by each range in `offloaded`; returns "" when each is marked exactly once, else what breaks it
// (the first position missing or held twice, and by what). marks: scratch, resized as needed.
std::string partition_error(int64_t position, int64_t sinks, int64_t window, std::span<const HeldRange> offloaded,
                            std::vector<uint8_t>& marks);

}  // namespace ra
