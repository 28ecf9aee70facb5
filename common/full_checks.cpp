#include "common/full_checks.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace ra {

bool full_checks_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("RA_FULL_CHECKS");
    if (v != nullptr && *v != '\0') return std::strcmp(v, "0") != 0;
#ifdef NDEBUG
    return false;
#else
    return true;
#endif
  }();
  return on;
}

std::string partition_error(int64_t position, int64_t sinks, int64_t window, std::span<const HeldRange> offloaded,
                            std::vector<uint8_t>& marks) {
  const int64_t n = position + 1;
  marks.assign(static_cast<size_t>(std::max<int64_t>(n, 0)), 0);
  std::string error;
  std::vector<std::string> holders;  // marks[i] = 1 + the index of i's holder here (at most 255 holders)
  auto mark = [&](int64_t begin, int64_t end, const std::string& what) {
    if (holders.size() >= 255) {
      error = "more than 255 holders to check";
      return;
    }
    holders.push_back(what);
    const auto code = static_cast<uint8_t>(holders.size());
    for (int64_t i = std::max<int64_t>(begin, 0); i < end && error.empty(); ++i) {
      if (i >= n) {
        error = fmt::format("position {} held by {} is past the step's position {}", i, what, position);
      } else if (marks[static_cast<size_t>(i)] != 0) {
        error = fmt::format("position {} is held twice: by {} and by {}", i,
                            holders[marks[static_cast<size_t>(i)] - 1u], what);
      } else {
        marks[static_cast<size_t>(i)] = code;
      }
    }
  };
  const int64_t sink_end = std::min(sinks, n);
  mark(0, sink_end, fmt::format("the sinks [0, {})", sink_end));
  const int64_t window_begin = window > 0 ? std::min(n, std::max(sinks, n - window)) : n;
  mark(window_begin, n, fmt::format("the window [{}, {}]", window_begin, position));
  for (size_t r = 0; r < offloaded.size() && error.empty(); ++r) {
    const HeldRange& h = offloaded[r];
    mark(h.first, h.first + h.count, fmt::format("offloaded range {} [{}, {})", r, h.first, h.first + h.count));
  }
  if (!error.empty()) return error;
  const auto missing = std::find(marks.begin(), marks.end(), uint8_t{0});
  if (missing != marks.end()) {
    return fmt::format("position {} of [0, {}] is held by no set (sinks {}, window {})", missing - marks.begin(),
                       position, sinks, window);
  }
  return {};
}

}  // namespace ra
