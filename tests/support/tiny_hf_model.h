#pragma once
// Writes tiny Hugging Face Llama checkpoints (config.json + safetensors) for tests, so unit tests need
// no downloaded model. Weights are deterministic pseudo-random values from a seed. The low-level
// helpers (RawTensor, write_safetensors, write_safetensors_raw) let tests craft corrupt files.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace ra::test {

struct TinyHfSpec {
  int64_t hidden = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;  // GQA: two query heads per KV head
  int64_t head_dim = 16;
  int64_t intermediate = 128;
  int64_t vocab = 258;   // 256 bytes + BOS (256) + EOS (257): the byte tokenizer's vocabulary
  int64_t max_position_embeddings = 256;
  std::string dtype = "BF16";  // "BF16", "F16" or "F32"
  int shards = 1;              // 1: model.safetensors; N > 1: N shard files + model.safetensors.index.json
  bool tie_word_embeddings = false;
  uint64_t seed = 1;
};

// One tensor's values in float32, before encoding. values: row-major, shape as in HF.
struct FloatTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// One tensor as it goes into a safetensors file. `offsets`, when set, is written to the header instead
// of the tensor's true [begin, end) in the data section, so a test can make the header lie.
struct RawTensor {
  std::string name;
  std::string dtype;  // header dtype string: "F32", "BF16", "I8", ... (not checked here)
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
  std::optional<std::pair<uint64_t, uint64_t>> offsets;
};

// A checkpoint before it is written: config.json and the tensors of each shard file.
struct HfCheckpoint {
  nlohmann::json config;
  std::vector<std::pair<std::string, std::vector<RawTensor>>> shards;  // file name, tensors in data order
};

// config.json with HF field names; bos 256, eos 257, rope_scaling null.
nlohmann::json tiny_hf_config(const TinyHfSpec& spec);

// The model's weights under HF names, in a fixed order, from spec.seed. Every value is exactly
// representable in bf16, so F32, F16 and BF16 files of the same spec hold the same numbers.
std::vector<FloatTensor> tiny_hf_weights(const TinyHfSpec& spec);

// Encodes float values as dtype "F32", "F16", "BF16" or "F64" (little-endian).
RawTensor encode_tensor(const FloatTensor& tensor, const std::string& dtype);

// The tiny model's files; with shards > 1 the tensor list is split into contiguous, near-equal parts
// named model-0000i-of-0000N.safetensors.
HfCheckpoint make_tiny_hf(const TinyHfSpec& spec);

// The tensor `name` in any shard; throws ra::Error when absent.
RawTensor& find_tensor(HfCheckpoint& checkpoint, const std::string& name);
// Removes `name` from its shard (so also from the index that write_hf_checkpoint writes).
void erase_tensor(HfCheckpoint& checkpoint, const std::string& name);

// Writes config.json, every shard, and (for more than one shard) model.safetensors.index.json whose
// weight_map lists exactly the tensors written.
void write_hf_checkpoint(const std::filesystem::path& dir, const HfCheckpoint& checkpoint);

// make_tiny_hf + write_hf_checkpoint.
void write_tiny_hf_model(const std::filesystem::path& dir, const TinyHfSpec& spec);

// A safetensors file: the tensors' bytes concatenated in order, with a header giving each its true
// offsets unless RawTensor::offsets overrides them.
void write_safetensors(const std::filesystem::path& file, const std::vector<RawTensor>& tensors);

// A safetensors file from an arbitrary header string (which need not be valid JSON) and data section.
void write_safetensors_raw(const std::filesystem::path& file, const std::string& header,
                           std::span<const std::byte> data);

void write_json(const std::filesystem::path& file, const nlohmann::json& value);
nlohmann::json read_json(const std::filesystem::path& file);
void write_text(const std::filesystem::path& file, const std::string& text);

}  // namespace ra::test
