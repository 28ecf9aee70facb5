#include "common/error.h"
#include "gpu_worker/model/model_config.h"
#include "gpu_worker/model/tokenizer.h"

namespace ra {

std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& spec, const std::filesystem::path& model_path,
                                             const ModelConfig& config) {
  if (spec == "bytes") return make_byte_tokenizer(config.vocab_size);
  if (!spec.empty()) {
    RA_REQUIRE(std::filesystem::is_regular_file(spec), "--tokenizer {}: no such file (or use 'bytes')", spec);
    if (std::filesystem::path(spec).extension() == ".json") return load_hf_tokenizer(spec, config.vocab_size);
    return load_llama2c_tokenizer(spec, config.vocab_size, config.bos_token_id);
  }
  const auto dir = std::filesystem::is_directory(model_path) ? model_path : model_path.parent_path();
  std::vector<std::filesystem::path> candidates = {
      dir / "tokenizer.bin", dir / ("tok" + std::to_string(config.vocab_size) + ".bin")};
  for (const auto& c : candidates) {
    if (std::filesystem::is_regular_file(c)) return load_llama2c_tokenizer(c, config.vocab_size, config.bos_token_id);
  }
  const auto hf_json = dir / "tokenizer.json";
  const bool has_hf_json = std::filesystem::exists(hf_json);
  if (std::filesystem::is_regular_file(hf_json)) return load_hf_tokenizer(hf_json, config.vocab_size);
  // The byte-level vocabulary: 256 bytes, BOS and EOS, and no tokenizer file that says otherwise.
  if (config.vocab_size == 258 && !has_hf_json && !std::filesystem::exists(dir / "tokenizer.model")) {
    return make_byte_tokenizer(config.vocab_size);
  }
  std::string looked;
  for (const auto& c : candidates) looked += " " + c.string();
  raise("no usable tokenizer for {}: looked for{} {}{}; a byte-level vocabulary needs vocab_size 258 (this "
        "model has {}). Pass --tokenizer FILE (tokenizer.json or llama2.c format) or --tokenizer bytes",
        model_path.string(), looked, hf_json.string(),
        has_hf_json ? " (it exists but is not a regular file)" : "", config.vocab_size);
}

}  // namespace ra
