#include "gpu_worker/model/hf_normalizer.h"

#include "common/error.h"
#include "gpu_worker/model/onig_regex.h"
#include "gpu_worker/model/utf8.h"

namespace ra {

void replace_all(std::string_view in, const std::string& pattern, const OnigRegex* regex, const std::string& content,
                 std::string& out) {
  out.clear();
  size_t done = 0;
  auto replace = [&](size_t start, size_t end) {
    out.append(in.substr(done, start - done));
    out.append(content);
    done = end;
  };
  if (regex != nullptr) {
    regex->for_each_match(in, replace);
  } else if (!pattern.empty()) {
    for (size_t at = in.find(pattern); at != std::string_view::npos; at = in.find(pattern, done)) {
      replace(at, at + pattern.size());
    }
  }
  out.append(in.substr(done));
}

HfNormalizer::HfNormalizer(const std::vector<HfNormalizerStep>& steps, const std::string& source) : steps_(steps) {
  for (size_t i = 0; i < steps_.size(); ++i) {
    const HfNormalizerStep& s = steps_[i];
    const bool regex = s.kind == HfNormalizerStep::Kind::kReplace && s.pattern.is_regex;
    regexes_.push_back(regex ? std::make_unique<OnigRegex>(
                                   s.pattern.text, fmt::format("{}: field 'normalizer' (step {}, Replace)", source, i))
                             : nullptr);
  }
}

HfNormalizer::~HfNormalizer() = default;
HfNormalizer::HfNormalizer(HfNormalizer&&) noexcept = default;

void HfNormalizer::apply(std::string_view in, std::string& out) const {
  out.assign(in);
  std::string scratch;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const HfNormalizerStep& s = steps_[i];
    switch (s.kind) {
      case HfNormalizerStep::Kind::kPrepend:
        if (!out.empty()) out.insert(0, s.text);
        break;
      case HfNormalizerStep::Kind::kReplace:
        replace_all(out, s.pattern.text, regexes_[i].get(), s.text, scratch);
        out.swap(scratch);
        break;
      case HfNormalizerStep::Kind::kStrip: {
        size_t begin = 0, end = out.size();
        if (s.left) {
          while (begin < end) {
            char32_t cp = 0;
            const size_t len = utf8_decode(out, begin, cp);
            if (!is_unicode_whitespace(cp)) break;
            begin += len;
          }
        }
        if (s.right) {
          while (end > begin) {
            size_t prev = end - 1;
            while (prev > begin && (static_cast<unsigned char>(out[prev]) & 0xC0) == 0x80) --prev;
            char32_t cp = 0;
            utf8_decode(out, prev, cp);
            if (!is_unicode_whitespace(cp)) break;
            end = prev;
          }
        }
        out = out.substr(begin, end - begin);
        break;
      }
    }
  }
}

}  // namespace ra
