#pragma once
// Compact lists of ascending ids for plans and logs: "0-3,8,10-11" (CPUs of a NUMA node, kv heads of
// a shard).

#include <fmt/format.h>

#include <string>
#include <vector>

namespace ra {

// "" for an empty list.
template <typename Int>
std::string id_ranges(const std::vector<Int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", ids[i]) : fmt::format("{}-{}", ids[i], ids[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace ra
