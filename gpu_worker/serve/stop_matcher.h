#pragma once
// OpenAI's `stop` strings over streamed text: generation ends at the first occurrence of any of them,
// and neither it nor anything after it is returned. Text that could be the start of a stop string is
// held back until a later piece settles it, so a streamed response never shows part of a stop string.
// Pieces are whole UTF-8 characters (StreamDecoder), and so is everything released.

#include <string>
#include <string_view>
#include <vector>

namespace ra::serve {

class StopMatcher {
 public:
  // `stops`: non-empty strings (the request parser refuses empty ones).
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds `piece`; appends the text now safe to return to `out`. Returns true when a stop string has
  // matched: `out` then ends just before it, and later calls release nothing.
  bool push(std::string_view piece, std::string& out);
  // At the end of generation (no stop matched): appends the text still held back.
  void flush(std::string& out);
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet released: a suffix that is a prefix of some stop string
  bool stopped_ = false;
};

}  // namespace ra::serve
