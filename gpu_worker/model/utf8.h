#pragma once
// UTF-8 helpers for the tokenizers: validation with the WHATWG / Unicode "maximal subpart" replacement
// rule (the rule of Rust's String::from_utf8_lossy and of JavaScript's TextDecoder), code point
// decoding and encoding, and an assembler that turns a byte stream into whole code points.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ra {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Appends the UTF-8 encoding of `cp` (a Unicode scalar value) to `out`.
void utf8_append(std::string& out, char32_t cp);

// Decodes the code point starting at s[pos] of valid UTF-8 `s`; returns its length in bytes (1-4).
size_t utf8_decode(std::string_view s, size_t pos, char32_t& cp);

// True when `s` is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool utf8_is_valid(std::string_view s);

// `s` with every ill-formed subsequence replaced by U+FFFD, one per maximal subpart.
std::string utf8_lossy(std::string_view s);

// The Unicode White_Space property (Rust's char::is_whitespace, regex \s, Oniguruma \s).
bool is_unicode_whitespace(char32_t cp);

// Turns a stream of bytes into whole UTF-8 code points: push() appends to `out` every code point the
// bytes complete and holds back the bytes of an incomplete one; finish() flushes what is held back.
// Ill-formed bytes become U+FFFD (one per maximal subpart, as utf8_lossy over the whole stream) when
// `replace_invalid`, and are passed through unchanged otherwise (the output is then byte-identical to
// the input, only cut at code point boundaries).
class Utf8Assembler {
 public:
  explicit Utf8Assembler(bool replace_invalid) : replace_invalid_(replace_invalid) {}

  void push(std::string_view bytes, std::string& out);
  void finish(std::string& out);
  // Bytes of an incomplete code point held back (0-3).
  size_t pending() const { return seen_; }

 private:
  void fail(std::string& out);  // the held-back bytes are a maximal subpart that cannot complete
  void reset();

  bool replace_invalid_;
  unsigned char held_[4] = {};  // bytes of the code point being assembled
  int needed_ = 0;              // continuation bytes still to come
  int seen_ = 0;                // bytes held in held_
  unsigned char lower_ = 0x80, upper_ = 0xBF;  // allowed range of the next continuation byte
};

}  // namespace ra
