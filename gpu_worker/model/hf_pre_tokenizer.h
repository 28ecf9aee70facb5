#pragma once
// The pre-tokenizer of a tokenizer.json (Split, ByteLevel, Metaspace, in sequence), as the reference's
// PreTokenizedString::split: each step splits every piece the previous step produced, empty pieces are
// dropped, and the final pieces are the words BPE encodes.
//
// ByteLevel's mapping of bytes to characters is not performed: the words stay raw bytes, and a
// byte-level BpeModel keys its vocabulary by the bytes instead (see bpe_model.h).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/function_ref.h"
#include "gpu_worker/model/hf_tokenizer_spec.h"

namespace ra {

class OnigRegex;

class HfPreTokenizer {
 public:
  // Compiles the steps' regexes; throws ra::Error naming `source` for an invalid one.
  HfPreTokenizer(const std::vector<HfPreTokenizerStep>& steps, const std::string& source);
  ~HfPreTokenizer();
  HfPreTokenizer(HfPreTokenizer&&) noexcept;

  // Whether a ByteLevel step is present: the words are then raw bytes for a byte-level vocabulary.
  bool byte_level() const { return byte_level_; }

  // Calls emit(word) for each word of `text` (valid UTF-8, not empty), in order. `at_origin`: `text`
  // starts at offset 0 of the input (Metaspace's prepend_scheme "first" prepends only there).
  void split(std::string_view text, bool at_origin, FunctionRef<void(std::string_view)> emit) const;

 private:
  void run(size_t step, std::string_view text, bool at_origin, FunctionRef<void(std::string_view)> emit) const;
  void run_split(size_t step, const OnigRegex* regex, const std::string& literal, HfSplitBehavior behavior,
                 bool invert, std::string_view text, bool at_origin, FunctionRef<void(std::string_view)> emit) const;

  std::vector<HfPreTokenizerStep> steps_;
  std::vector<std::unique_ptr<OnigRegex>> regexes_;  // per step: Split's regex, ByteLevel's GPT-2 regex, or null
  bool byte_level_ = false;
};

}  // namespace ra
