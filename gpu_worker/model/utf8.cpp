#include "gpu_worker/model/utf8.h"

namespace ra {

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t utf8_decode(std::string_view s, size_t pos, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  auto cont = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[pos + k]) & 0x3F); };
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  if (b0 < 0xE0) {
    cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | cont(1);
    return 2;
  }
  if (b0 < 0xF0) {
    cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
    return 3;
  }
  cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
  return 4;
}

bool utf8_is_valid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(need) >= n) return false;  // truncated at the end
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (int k = 2; k <= need; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    }
    i += static_cast<size_t>(need) + 1;
  }
  return true;
}

bool is_unicode_whitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  Utf8Assembler assembler(/*replace_invalid=*/true);
  assembler.push(s, out);
  assembler.finish(out);
  return out;
}

void Utf8Assembler::reset() {
  needed_ = 0;
  seen_ = 0;
  lower_ = 0x80;
  upper_ = 0xBF;
}

void Utf8Assembler::fail(std::string& out) {
  if (replace_invalid_) {
    utf8_append(out, kReplacementChar);
  } else {
    out.append(reinterpret_cast<const char*>(held_), static_cast<size_t>(seen_));
  }
  reset();
}

void Utf8Assembler::push(std::string_view bytes, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (needed_ == 0) {
      // Nothing held: copy a run of ASCII at once.
      if (b < 0x80) {
        size_t j = i + 1;
        while (j < n && p[j] < 0x80) ++j;
        out.append(reinterpret_cast<const char*>(p + i), j - i);
        i = j;
        continue;
      }
      if (b >= 0xC2 && b <= 0xDF) {
        needed_ = 1;
      } else if (b >= 0xE0 && b <= 0xEF) {
        needed_ = 2;
        if (b == 0xE0) lower_ = 0xA0;
        if (b == 0xED) upper_ = 0x9F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        needed_ = 3;
        if (b == 0xF0) lower_ = 0x90;
        if (b == 0xF4) upper_ = 0x8F;
      } else {
        held_[0] = b;  // a byte that starts no sequence is a maximal subpart of its own
        seen_ = 1;
        fail(out);
        ++i;
        continue;
      }
      held_[0] = b;
      seen_ = 1;
      ++i;
      continue;
    }
    if (b < lower_ || b > upper_) {
      fail(out);  // b is not consumed: it may start the next sequence
      continue;
    }
    lower_ = 0x80;
    upper_ = 0xBF;
    held_[seen_++] = b;
    ++i;
    if (--needed_ == 0) {
      out.append(reinterpret_cast<const char*>(held_), static_cast<size_t>(seen_));
      reset();
    }
  }
}

void Utf8Assembler::finish(std::string& out) {
  if (seen_ > 0) fail(out);
}

}  // namespace ra
