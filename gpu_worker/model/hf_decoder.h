#pragma once
// The decoder chain of a tokenizer.json (ByteLevel; Replace, ByteFallback, Fuse, Strip, Metaspace in a
// Sequence; or none), run one token at a time.
//
// The reference (tokenizers' Decoder::decode) maps a whole list of token strings at once: each step's
// decode_chain turns a list of strings into another, and the result is joined. Here every step is a
// streaming stage that receives the strings one by one and passes on what can no longer change, so
// that pushing the tokens of a sequence one at a time and then calling finish() produces exactly the
// reference's decode of the whole sequence, split into pieces that are whole UTF-8:
//   - ByteLevel maps each token's characters back to bytes and decodes them as one stream; bytes of an
//     incomplete code point are held back, ill-formed ones become U+FFFD (String::from_utf8_lossy);
//   - ByteFallback holds a run of <0xNN> tokens until a non-byte token (or the end) closes it, then
//     emits it as text when it is valid UTF-8 and as one U+FFFD per byte when it is not;
//   - Fuse joins the rest into one string: later stages see one growing string ("continuation"
//     pieces) instead of separate tokens;
//   - Strip removes up to `start` leading and `stop` trailing copies of a character per string
//     (trailing copies are held until the string's end is known);
//   - Metaspace turns the replacement character into a space, and drops it in the first string.
// After Fuse or ByteLevel only Strip, Metaspace, Fuse and single-character Replace are accepted (the
// others would need to see across the pieces of one string); the constructor refuses other chains.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/hf_tokenizer_spec.h"

namespace ra {

class OnigRegex;

// One piece of a decoder stage's output: a token string, or (continues = true) more of the string the
// previous piece began.
struct DecodePiece {
  std::string_view text;
  bool continues = false;
};

class DecodeStage {
 public:
  virtual ~DecodeStage() = default;
  // Takes one piece; passes what it can to the next stage (or appends it to `out` when last).
  virtual void push(DecodePiece piece, std::string& out) = 0;
  // The input has ended: passes on everything held back, then finishes the next stage.
  virtual void finish(std::string& out) = 0;
  // The prompt ends here and generated tokens follow: a run of <0xNN> pieces is closed (it belongs to
  // the prompt's text), while a code point cut by the prompt's end stays open for the next token.
  virtual void end_prompt(std::string& out) = 0;
};

// The decoder chain's configuration, built once per tokenizer.
class HfDecoderChain {
 public:
  // Throws ra::Error naming spec.source and the decoder field for chains it cannot stream exactly.
  explicit HfDecoderChain(const HfTokenizerSpec& spec);
  ~HfDecoderChain();

  // A fresh chain of stages. `raw`: ByteLevel and ByteFallback pass bytes through unchecked and hold
  // nothing back (for the per-token Tokenizer::decode, whose pieces may split a code point).
  std::unique_ptr<DecodeStage> start(bool raw) const;

 private:
  std::vector<HfDecoderStep> steps_;
  bool join_with_spaces_ = false;  // no decoder: tokens are joined with single spaces
  std::vector<std::unique_ptr<OnigRegex>> regexes_;  // per step: the Replace regex, or null
};

}  // namespace ra
