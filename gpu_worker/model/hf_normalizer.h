#pragma once
// The normalizer of a tokenizer.json (Prepend, Replace, Strip, in sequence), as the reference applies it
// to each piece of text between added tokens.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/hf_tokenizer_spec.h"

namespace ra {

class OnigRegex;

class HfNormalizer {
 public:
  // Compiles Replace regexes; throws ra::Error naming `source` for an invalid one.
  HfNormalizer(const std::vector<HfNormalizerStep>& steps, const std::string& source);
  ~HfNormalizer();
  HfNormalizer(HfNormalizer&&) noexcept;

  bool empty() const { return steps_.empty(); }
  // out = the normalized `in` (valid UTF-8 in, valid UTF-8 out).
  void apply(std::string_view in, std::string& out) const;

 private:
  std::vector<HfNormalizerStep> steps_;
  std::vector<std::unique_ptr<OnigRegex>> regexes_;  // per step: the Replace regex, or null
};

// Every occurrence of `pattern` (a literal, or `regex` when not null) in `in` replaced by `content`,
// left to right, non-overlapping (an empty literal matches nothing).
void replace_all(std::string_view in, const std::string& pattern, const OnigRegex* regex, const std::string& content,
                 std::string& out);

}  // namespace ra
