#include "gpu_worker/serve/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "common/error.h"

namespace ra::serve {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_) RA_ASSERT(!s.empty());
  size_t longest = 0;
  for (const std::string& s : stops_) longest = std::max(longest, s.size());
  held_.reserve(2 * longest + 64);
}

bool StopMatcher::push(std::string_view piece, std::string& out) {
  if (stopped_) return true;
  if (stops_.empty()) {
    out.append(piece);
    return false;
  }
  // Only the held text and the new piece can hold a match: anything released earlier was checked.
  const size_t old_size = held_.size();
  held_.append(piece);
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    // A match must end inside the new piece: start the search where such a match could begin.
    const size_t from = old_size >= s.size() ? old_size - s.size() + 1 : 0;
    const size_t at = held_.find(s, from);
    if (at != std::string::npos) first = std::min(first, at);
  }
  if (first != std::string::npos) {
    out.append(held_, 0, first);
    held_.clear();
    stopped_ = true;
    return true;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  out.append(held_, 0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return false;
}

void StopMatcher::flush(std::string& out) {
  if (stopped_) return;
  out.append(held_);
  held_.clear();
}

}  // namespace ra::serve
