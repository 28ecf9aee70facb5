#pragma once
// The geometry and numerics of a Llama-family model, as every process must agree on them.

#include <cstdint>
#include <filesystem>
#include <string>

namespace ra {

// Llama-3.1 style frequency-dependent RoPE scaling ("rope_type": "llama3" in config.json).
struct RopeScaling {
  bool llama3 = false;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;       // query heads
  int64_t n_kv_heads = 0;    // key/value heads; n_heads % n_kv_heads == 0 (GQA)
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;  // the longest sequence (prompt + generated) allowed
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;  // -1: none
  int32_t eos_token_id = -1;  // -1: none

  int64_t group_size() const { return n_heads / n_kv_heads; }
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  // Score scale of DESIGN §4: 1/sqrt(head_dim).
  float attn_scale() const;

  // Throws ra::Error naming `source` and the offending field when the geometry is inconsistent.
  void validate(const std::string& source) const;
};

// Reads a Hugging Face LlamaForCausalLM config.json. Errors name the file and the field.
ModelConfig parse_hf_config(const std::filesystem::path& config_json);

// One line per field, for --print-config and logs.
std::string describe(const ModelConfig& config);

}  // namespace ra
