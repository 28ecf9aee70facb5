#pragma once
// Text <-> token ids. Three tokenizers are supported: byte-level (ids 0-255 are bytes), llama2.c's
// sentencepiece-style BPE in its .bin format, and Hugging Face tokenizer.json BPE (Llama-3 byte-level,
// Llama-2 SentencePiece-style; see hf_tokenizer.h).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ra {

struct ModelConfig;

// Turns generated token ids into the text to print, one token at a time, never cutting a UTF-8 code
// point in two: the bytes of an incomplete one are held back until a later token completes it. Made by
// Tokenizer::stream_decoder, one per generated sequence; not thread-safe.
class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  // The text that `token` adds (whole code points; empty while bytes are held back).
  virtual std::string put(int32_t token) = 0;
  // What is still held back once generation has ended; call once, after the last put().
  virtual std::string finish() = 0;
};

// What a tokenizer's own files say about BOS and EOS. Unset / empty where they say nothing, and the
// model config's bos_token_id / eos_token_id apply (byte and llama2.c tokenizers say nothing).
struct TokenizerSpecials {
  std::optional<bool> add_bos;   // whether a prompt starts with bos_id
  int32_t bos_id = -1;           // -1: not named
  std::vector<int32_t> eos_ids;  // every id that ends generation (Llama-3.1 Instruct has three)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`, without BOS.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The bytes to print for `token` when it follows `prev` (llama2.c drops the space after BOS). A
  // piece may hold part of a UTF-8 code point; stream_decoder() is what printing should use.
  virtual std::string decode(int32_t prev, int32_t token) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;

  // A StreamDecoder for the tokens generated after `context` (the prompt's ids, BOS included; may be
  // empty): the concatenation of its pieces is the text the generated tokens add to the context's. The
  // default wraps decode(prev, token), holding back an incomplete UTF-8 sequence at the end of what it
  // has produced and passing ill-formed bytes through unchanged, so its output is byte for byte the
  // concatenation of decode()'s, only cut at code point boundaries.
  // Valid while the tokenizer lives.
  virtual std::unique_ptr<StreamDecoder> stream_decoder(std::span<const int32_t> context) const;
  // BOS / EOS as the tokenizer's files give them (nothing, by default).
  virtual TokenizerSpecials specials() const { return {}; }
};

// Ids 0-255 are raw bytes; any higher id (BOS, EOS, ...) decodes to nothing.
std::unique_ptr<Tokenizer> make_byte_tokenizer(int64_t vocab_size);

// llama2.c tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 length, bytes.
// Throws ra::Error naming the file when it is truncated or inconsistent with `vocab_size`.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& file, int64_t vocab_size,
                                                  int32_t bos_token_id);

// Hugging Face tokenizer.json, with tokenizer_config.json (add_bos_token, bos_token, eos_token) and
// generation_config.json (eos_token_id, an integer or a list) read from its folder when present.
// `vocab_size`: the model's; every id of the tokenizer must be below it (0: no check). Throws ra::Error
// naming the file and the field for malformed, truncated or unsupported files.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& tokenizer_json, int64_t vocab_size);

// Resolves the tokenizer for a model.
//   spec "bytes": byte-level. spec = a path: a Hugging Face tokenizer.json when it ends in .json, else a
//   llama2.c tokenizer file. spec empty: look beside the model (tokenizer.bin, tok<vocab>.bin, then
//   tokenizer.json), and fall back to bytes for a 258-entry vocabulary with no tokenizer file. Throws
//   ra::Error listing every file looked for when nothing fits.
std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& spec, const std::filesystem::path& model_path,
                                             const ModelConfig& config);

}  // namespace ra
