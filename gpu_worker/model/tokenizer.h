#pragma once
// Text <-> token ids. Two tokenizers are supported: byte-level (ids 0-255 are bytes) and llama2.c's
// sentencepiece-style BPE in its .bin format.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ra {

struct ModelConfig;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`, without BOS.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The bytes to print for `token` when it follows `prev` (llama2.c drops the space after BOS).
  virtual std::string decode(int32_t prev, int32_t token) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
};

// Ids 0-255 are raw bytes; any higher id (BOS, EOS, ...) decodes to nothing.
std::unique_ptr<Tokenizer> make_byte_tokenizer(int64_t vocab_size);

// llama2.c tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 length, bytes.
// Throws ra::Error naming the file when it is truncated or inconsistent with `vocab_size`.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& file, int64_t vocab_size,
                                                  int32_t bos_token_id);

// Resolves the tokenizer for a model.
//   spec "bytes": byte-level. spec = a path: a llama2.c tokenizer file. spec empty: look beside the
//   model (tokenizer.bin, tok<vocab>.bin), and fall back to bytes for a 258-entry vocabulary with no
//   tokenizer file. Throws ra::Error listing every file looked for when nothing fits.
std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& spec, const std::filesystem::path& model_path,
                                             const ModelConfig& config);

}  // namespace ra
