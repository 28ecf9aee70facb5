#pragma once
// A Hugging Face tokenizer.json BPE tokenizer, reproducing the reference (the Rust `tokenizers`
// library) id for id and character for character:
//
//   encode: input bytes -> ill-formed UTF-8 replaced by U+FFFD (as a caller's lossy decode would)
//           -> split on added tokens that are not normalized (<|begin_of_text|>, <s>, ...)
//           -> each remaining piece normalized, then split on normalized added tokens
//           -> pre-tokenized into words (Split regex by Oniguruma, ByteLevel, Metaspace)
//           -> each word BPE-encoded (bpe_model.h), with a per-call cache of repeated words.
//   decode: ids -> token strings (added tokens by their content; unknown ids skipped; special ones
//           skipped when asked) -> the decoder chain (hf_decoder.h), streamable one token at a time.
//
// Llama-3 files are byte-level BPE (Split + ByteLevel pre-tokenizer, ByteLevel decoder); Llama-2 files
// are SentencePiece-style (Prepend/Replace normalizer or Metaspace pre-tokenizer, byte fallback,
// Replace/ByteFallback/Fuse/Strip decoder). See hf_tokenizer_spec.h for every supported component.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/added_tokens.h"
#include "gpu_worker/model/bpe_model.h"
#include "gpu_worker/model/hf_decoder.h"
#include "gpu_worker/model/hf_normalizer.h"
#include "gpu_worker/model/hf_pre_tokenizer.h"
#include "gpu_worker/model/tokenizer.h"

namespace ra {

class HfTokenizer final : public Tokenizer {
 public:
  // Reads `tokenizer_json` and, from its folder, tokenizer_config.json and generation_config.json.
  // Throws ra::Error naming the file and field on any problem.
  explicit HfTokenizer(const std::filesystem::path& tokenizer_json);

  // The reference's encode(text, add_special_tokens=false).
  std::vector<int32_t> encode(std::string_view text) const override;
  // The reference's encode(text, add_special_tokens=true): the post-processor's template around it.
  std::vector<int32_t> encode_with_template(std::string_view text) const;
  // The reference's decode(ids, skip_special_tokens).
  std::string decode_ids(std::span<const int32_t> ids, bool skip_special) const;
  // The text of `token` after `prev` (decode_ids({prev, token}, true) without prev's text), raw: a
  // byte-level or byte-fallback piece may be part of a code point.
  std::string decode(int32_t prev, int32_t token) const override;
  // Streams the text the generated tokens add after `context` (the prompt): decode_ids(context +
  // generated, skip_special) minus decode_ids(context, skip_special) whenever the latter is a prefix of
  // the former (DecodeStage::end_prompt says what happens at a prompt that ends inside a byte run).
  std::unique_ptr<StreamDecoder> stream_decoder(std::span<const int32_t> context, bool skip_special) const;
  // Skips special tokens (what generation prints).
  std::unique_ptr<StreamDecoder> stream_decoder(std::span<const int32_t> context) const override {
    return stream_decoder(context, /*skip_special=*/true);
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(id_text_.size()); }
  std::string name() const override { return "hf:" + source_; }
  TokenizerSpecials specials() const override { return specials_; }

  // The token string of `id` as decoding sees it, or nullptr for an id that has none.
  const std::string* token_text(int32_t id) const;
  bool is_special(int32_t id) const;

 private:
  HfTokenizer(const HfTokenizerSpec& spec, const std::filesystem::path& tokenizer_json);
  void encode_section(std::string_view section, bool at_origin, BpeScratch& scratch, std::vector<int32_t>& out) const;

  std::string source_;
  std::unique_ptr<BpeModel> bpe_;
  HfNormalizer normalizer_;
  HfPreTokenizer pre_tokenizer_;
  HfDecoderChain decoder_;
  AddedTokenSplitter raw_added_;         // added tokens matched in the input as it is
  AddedTokenSplitter normalized_added_;  // added tokens matched in normalized text
  std::vector<int32_t> template_prefix_, template_suffix_;
  TokenizerSpecials specials_;
  std::vector<std::string> id_text_;  // id -> token string for decoding
  std::vector<uint8_t> id_kind_;      // id -> 0 none, 1 token, 2 special token
};

}  // namespace ra
