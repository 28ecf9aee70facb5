#pragma once
// An Oniguruma regular expression, compiled the way the Hugging Face tokenizers library compiles the
// patterns of tokenizer.json (onig crate `Regex::new`: default syntax, no options, UTF-8), so that
// Llama-3's split pattern runs unmodified and matches exactly as in the reference.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace ra {

class OnigRegex {
 public:
  // Throws ra::Error "<where>: invalid regular expression ...: <Oniguruma's message>".
  OnigRegex(std::string_view pattern, std::string_view where);
  ~OnigRegex();
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;

  // Calls on_match(start, end) (byte offsets into `text`, valid UTF-8) for each match, left to right,
  // as the onig crate's find_iter: a search resumes at the previous match's end, and an empty match
  // right where the previous match ended is skipped by advancing one code point. Safe from several
  // threads at once (searches only read the compiled regex; the onig crate declares Regex Sync).
  template <typename F>
  void for_each_match(std::string_view text, F&& on_match) const {
    size_t from = 0;
    bool have_last = false;
    size_t last_end = 0;
    while (from <= text.size()) {
      size_t start = 0, end = 0;
      if (!search(text, from, start, end)) return;
      if (start == end && have_last && last_end == end) {
        from += from < text.size() ? code_point_length(text, from) : 1;
        continue;
      }
      from = end;
      last_end = end;
      have_last = true;
      on_match(start, end);
    }
  }

  // True when a match starts exactly at byte `pos` of `text`; `end` is where it ends.
  bool match_at(std::string_view text, size_t pos, size_t& end) const;

  const std::string& pattern() const { return pattern_; }

 private:
  // The leftmost match at or after byte `from`; false when there is none.
  bool search(std::string_view text, size_t from, size_t& start, size_t& end) const;
  static size_t code_point_length(std::string_view text, size_t pos);

  std::string pattern_;
  void* regex_ = nullptr;  // regex_t*, opaque so that users need not include oniguruma.h
};

}  // namespace ra
