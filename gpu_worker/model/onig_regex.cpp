#include "gpu_worker/model/onig_regex.h"

#include <oniguruma.h>

#include <mutex>

#include "common/error.h"

namespace ra {
namespace {

void initialize_oniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

const UChar* bytes(std::string_view s) { return reinterpret_cast<const UChar*>(s.data()); }

}  // namespace

OnigRegex::OnigRegex(std::string_view pattern, std::string_view where) : pattern_(pattern) {
  initialize_oniguruma();
  regex_t* reg = nullptr;
  OnigErrorInfo info{};
  const int rc = onig_new(&reg, bytes(pattern), bytes(pattern) + pattern.size(), ONIG_OPTION_NONE,
                          ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
  if (rc != ONIG_NORMAL) {
    UChar message[ONIG_MAX_ERROR_MESSAGE_LEN] = {};
    onig_error_code_to_str(message, rc, &info);
    raise("{}: invalid regular expression '{}': {}", where, pattern, reinterpret_cast<const char*>(message));
  }
  regex_ = reg;
}

OnigRegex::~OnigRegex() {
  if (regex_ != nullptr) onig_free(static_cast<regex_t*>(regex_));
}

bool OnigRegex::match_at(std::string_view text, size_t pos, size_t& end) const {
  const UChar* s = bytes(text);
  const int len = onig_match(static_cast<regex_t*>(regex_), s, s + text.size(), s + pos, nullptr, ONIG_OPTION_NONE);
  if (len < 0) {
    RA_ASSERT_MSG(len == ONIG_MISMATCH, "onig_match failed with code {} on pattern '{}'", len, pattern_);
    return false;
  }
  end = pos + static_cast<size_t>(len);
  return true;
}

bool OnigRegex::search(std::string_view text, size_t from, size_t& start, size_t& end) const {
  // A match at `from` itself is the leftmost one, and anchored matching is cheaper than a search; most
  // split patterns (Llama-3's included) match at every position.
  if (match_at(text, from, end)) {
    start = from;
    return true;
  }
  const UChar* s = bytes(text);
  OnigRegion region;
  onig_region_init(&region);
  const int at = onig_search(static_cast<regex_t*>(regex_), s, s + text.size(), s + from, s + text.size(), &region,
                             ONIG_OPTION_NONE);
  bool found = false;
  if (at >= 0) {
    start = static_cast<size_t>(region.beg[0]);
    end = static_cast<size_t>(region.end[0]);
    found = true;
  } else {
    RA_ASSERT_MSG(at == ONIG_MISMATCH, "onig_search failed with code {} on pattern '{}'", at, pattern_);
  }
  onig_region_free(&region, 0);
  return found;
}

size_t OnigRegex::code_point_length(std::string_view text, size_t pos) {
  size_t n = 1;
  while (pos + n < text.size() && (static_cast<unsigned char>(text[pos + n]) & 0xC0) == 0x80) ++n;
  return n;
}

}  // namespace ra
