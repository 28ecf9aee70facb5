#include "gpu_worker/model/model_config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace ra {
namespace {

using nlohmann::json;

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "cannot open {}", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large (1e99999)
    raise("{}: invalid JSON: {}", path.string(), e.what());
  }
}

// Reads field `key` of `j` as T; `required` fields must be present and non-null.
template <typename T>
T get_field(const json& j, const char* key, const std::filesystem::path& path, bool required,
            T fallback = T{}) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    RA_REQUIRE(!required, "{}: missing required field '{}'", path.string(), key);
    return fallback;
  }
  try {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      RA_REQUIRE(it->is_number_integer(), "{}: field '{}' must be an integer, got {}", path.string(),
                 key, it->dump());
    }
    return it->get<T>();
  } catch (const json::exception& e) {
    raise("{}: field '{}' has the wrong type ({}): {}", path.string(), key, it->dump(), e.what());
  }
}

// eos_token_id may be a list in newer checkpoints; the first entry is used.
int32_t token_id_field(const json& j, const char* key, const std::filesystem::path& path) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  const json& v = it->is_array() && !it->empty() ? (*it)[0] : *it;
  RA_REQUIRE(v.is_number_integer(), "{}: field '{}' must be a token id, got {}", path.string(), key,
             it->dump());
  return v.get<int32_t>();
}

}  // namespace

float ModelConfig::attn_scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* field) {
    RA_REQUIRE(v > 0, "{}: '{}' must be positive, got {}", source, field, v);
  };
  positive(hidden_size, "hidden_size");
  positive(n_layers, "num_hidden_layers");
  positive(n_heads, "num_attention_heads");
  positive(n_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(intermediate_size, "intermediate_size");
  positive(vocab_size, "vocab_size");
  positive(max_position_embeddings, "max_position_embeddings");
  RA_REQUIRE(n_heads % n_kv_heads == 0,
             "{}: num_attention_heads ({}) is not a multiple of num_key_value_heads ({}); GQA needs "
             "whole groups",
             source, n_heads, n_kv_heads);
  RA_REQUIRE(head_dim % 2 == 0, "{}: head_dim ({}) must be even for RoPE", source, head_dim);
  RA_REQUIRE(rope_theta > 0.0f && std::isfinite(rope_theta), "{}: 'rope_theta' must be positive, got {}",
             source, rope_theta);
  RA_REQUIRE(rms_norm_eps > 0.0f, "{}: 'rms_norm_eps' must be positive, got {}", source, rms_norm_eps);
  RA_REQUIRE(bos_token_id < vocab_size && eos_token_id < vocab_size,
             "{}: bos_token_id ({}) or eos_token_id ({}) is outside the vocabulary of {}", source,
             bos_token_id, eos_token_id, vocab_size);
  if (rope_scaling.llama3) {
    RA_REQUIRE(rope_scaling.factor >= 1.0f && rope_scaling.low_freq_factor > 0.0f &&
                   rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                   rope_scaling.original_max_position_embeddings > 0,
               "{}: 'rope_scaling' (llama3) needs factor >= 1, 0 < low_freq_factor < "
               "high_freq_factor and original_max_position_embeddings > 0",
               source);
  }
}

ModelConfig parse_hf_config(const std::filesystem::path& path) {
  const json j = read_json(path);
  RA_REQUIRE(j.is_object(), "{}: invalid JSON: expected an object at the top level", path.string());

  ModelConfig c;
  c.hidden_size = get_field<int64_t>(j, "hidden_size", path, true);
  c.n_layers = get_field<int64_t>(j, "num_hidden_layers", path, true);
  c.n_heads = get_field<int64_t>(j, "num_attention_heads", path, true);
  c.n_kv_heads = get_field<int64_t>(j, "num_key_value_heads", path, false, c.n_heads);
  RA_REQUIRE(c.n_heads > 0, "{}: 'num_attention_heads' must be positive, got {}", path.string(),
             c.n_heads);
  c.head_dim = get_field<int64_t>(j, "head_dim", path, false, c.hidden_size / c.n_heads);
  c.intermediate_size = get_field<int64_t>(j, "intermediate_size", path, true);
  c.vocab_size = get_field<int64_t>(j, "vocab_size", path, true);
  c.max_position_embeddings = get_field<int64_t>(j, "max_position_embeddings", path, false, 2048);
  // transformers >= 5 writes the RoPE settings as one 'rope_parameters' object (rope_theta and the
  // scaling fields inside); older files have a top-level 'rope_theta' and 'rope_scaling'.
  const auto rope_parameters = j.find("rope_parameters");
  const bool has_rope_parameters = rope_parameters != j.end() && !rope_parameters->is_null();
  RA_REQUIRE(!has_rope_parameters || rope_parameters->is_object(), "{}: 'rope_parameters' must be an object or null",
             path.string());
  c.rope_theta = get_field<float>(j, "rope_theta", path, false,
                                  has_rope_parameters
                                      ? get_field<float>(*rope_parameters, "rope_theta", path, false, 10000.0f)
                                      : 10000.0f);
  c.rms_norm_eps = get_field<float>(j, "rms_norm_eps", path, false, 1e-6f);
  c.tie_word_embeddings = get_field<bool>(j, "tie_word_embeddings", path, false, false);
  c.bos_token_id = token_id_field(j, "bos_token_id", path);
  c.eos_token_id = token_id_field(j, "eos_token_id", path);

  const std::string act = get_field<std::string>(j, "hidden_act", path, false, "silu");
  RA_REQUIRE(act == "silu", "{}: 'hidden_act' is '{}'; only silu (Llama) is supported", path.string(),
             act);
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    RA_REQUIRE(!get_field<bool>(j, bias, path, false, false),
               "{}: '{}' is true; Llama checkpoints with biases are not supported", path.string(), bias);
  }

  auto it = has_rope_parameters ? rope_parameters : j.find("rope_scaling");
  if (it != j.end() && !it->is_null()) {
    RA_REQUIRE(it->is_object(), "{}: 'rope_scaling' must be an object or null", path.string());
    std::string type = get_field<std::string>(*it, "rope_type", path, false, "");
    if (type.empty()) type = get_field<std::string>(*it, "type", path, false, "");
    RA_REQUIRE(type == "llama3" || type == "default",
               "{}: 'rope_scaling' type '{}' is not supported (supported: llama3, default)",
               path.string(), type);
    if (type == "llama3") {
      c.rope_scaling.llama3 = true;
      c.rope_scaling.factor = get_field<float>(*it, "factor", path, true);
      c.rope_scaling.low_freq_factor = get_field<float>(*it, "low_freq_factor", path, true);
      c.rope_scaling.high_freq_factor = get_field<float>(*it, "high_freq_factor", path, true);
      c.rope_scaling.original_max_position_embeddings =
          get_field<int64_t>(*it, "original_max_position_embeddings", path, true);
    }
  }
  c.validate(path.string());
  return c;
}

std::string describe(const ModelConfig& c) {
  return fmt::format(
      "hidden_size={} layers={} heads={} kv_heads={} head_dim={} intermediate={} vocab={} "
      "max_positions={} rope_theta={} rope_scaling={} rms_norm_eps={} tied_embeddings={} bos={} eos={}",
      c.hidden_size, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.intermediate_size,
      c.vocab_size, c.max_position_embeddings, c.rope_theta,
      c.rope_scaling.llama3 ? fmt::format("llama3(factor={})", c.rope_scaling.factor) : "none",
      c.rms_norm_eps, c.tie_word_embeddings, c.bos_token_id, c.eos_token_id);
}

}  // namespace ra
