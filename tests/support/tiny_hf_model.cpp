#include "tests/support/tiny_hf_model.h"

#include "common/splitmix64.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/error.h"
#include "common/half.h"

namespace ra::test {
namespace {

using nlohmann::json;

// Portable weights: the same on every platform (common/splitmix64.h).
class Rng : public SplitMix64 {
 public:
  using SplitMix64::SplitMix64;
  // Uniform in [-1, 1).
  float uniform() { return static_cast<float>(next() >> 40) * 0x1p-23f - 1.0f; }
};

template <typename T>
void append_le(std::vector<std::byte>& out, T value) {  // we only build on little-endian hosts
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

void write_bytes(const std::filesystem::path& file, std::span<const std::byte> bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  RA_REQUIRE(out.good(), "cannot write {}", file.string());
}

}  // namespace

json tiny_hf_config(const TinyHfSpec& s) {
  return json{{"architectures", json::array({"LlamaForCausalLM"})},
              {"model_type", "llama"},
              {"hidden_size", s.hidden},
              {"num_hidden_layers", s.layers},
              {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kv_heads},
              {"head_dim", s.head_dim},
              {"intermediate_size", s.intermediate},
              {"vocab_size", s.vocab},
              {"max_position_embeddings", s.max_position_embeddings},
              {"rope_theta", 10000.0},
              {"rms_norm_eps", 1e-5},
              {"tie_word_embeddings", s.tie_word_embeddings},
              {"bos_token_id", 256},
              {"eos_token_id", 257},
              {"hidden_act", "silu"},
              {"rope_scaling", nullptr},
              {"torch_dtype", s.dtype == "F32" ? "float32" : s.dtype == "F16" ? "float16" : "bfloat16"}};
}

std::vector<FloatTensor> tiny_hf_weights(const TinyHfSpec& s) {
  Rng rng(s.seed);
  std::vector<FloatTensor> out;
  // Projections ~ U(-1, 1) / sqrt(fan_in) keep activations O(1); norms ~ 1 +- 0.1. Rounded to bf16.
  auto matrix = [&](std::string name, int64_t rows, int64_t cols) {
    FloatTensor t{std::move(name), {rows, cols}, std::vector<float>(static_cast<size_t>(rows * cols))};
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    for (float& v : t.values) v = to_float(to_bf16(rng.uniform() * scale));
    out.push_back(std::move(t));
  };
  auto norm = [&](std::string name) {
    FloatTensor t{std::move(name), {s.hidden}, std::vector<float>(static_cast<size_t>(s.hidden))};
    for (float& v : t.values) v = to_float(to_bf16(1.0f + 0.1f * rng.uniform()));
    out.push_back(std::move(t));
  };
  const int64_t q_dim = s.heads * s.head_dim, kv_dim = s.kv_heads * s.head_dim;
  matrix("model.embed_tokens.weight", s.vocab, s.hidden);
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    norm(p + "input_layernorm.weight");
    matrix(p + "self_attn.q_proj.weight", q_dim, s.hidden);
    matrix(p + "self_attn.k_proj.weight", kv_dim, s.hidden);
    matrix(p + "self_attn.v_proj.weight", kv_dim, s.hidden);
    matrix(p + "self_attn.o_proj.weight", s.hidden, q_dim);
    norm(p + "post_attention_layernorm.weight");
    matrix(p + "mlp.gate_proj.weight", s.intermediate, s.hidden);
    matrix(p + "mlp.up_proj.weight", s.intermediate, s.hidden);
    matrix(p + "mlp.down_proj.weight", s.hidden, s.intermediate);
  }
  norm("model.norm.weight");
  if (!s.tie_word_embeddings) matrix("lm_head.weight", s.vocab, s.hidden);
  return out;
}

RawTensor encode_tensor(const FloatTensor& t, const std::string& dtype) {
  RawTensor r{t.name, dtype, t.shape, {}, std::nullopt};
  for (float v : t.values) {
    if (dtype == "F32") {
      append_le(r.bytes, v);
    } else if (dtype == "F16") {
      append_le(r.bytes, to_f16(v).bits);
    } else if (dtype == "BF16") {
      append_le(r.bytes, to_bf16(v).bits);
    } else if (dtype == "F64") {
      append_le(r.bytes, static_cast<double>(v));
    } else {
      raise("encode_tensor: cannot encode dtype '{}'", dtype);
    }
  }
  return r;
}

HfCheckpoint make_tiny_hf(const TinyHfSpec& s) {
  RA_REQUIRE(s.shards >= 1, "make_tiny_hf: shards must be >= 1, got {}", s.shards);
  HfCheckpoint ck;
  ck.config = tiny_hf_config(s);
  const std::vector<FloatTensor> weights = tiny_hf_weights(s);
  const size_t n = weights.size(), parts = static_cast<size_t>(s.shards);
  for (size_t part = 0; part < parts; ++part) {
    const std::string name = parts == 1 ? "model.safetensors"
                                        : fmt::format("model-{:05d}-of-{:05d}.safetensors", part + 1, parts);
    std::vector<RawTensor> tensors;
    for (size_t i = part * n / parts; i < (part + 1) * n / parts; ++i) {
      tensors.push_back(encode_tensor(weights[i], s.dtype));
    }
    ck.shards.emplace_back(name, std::move(tensors));
  }
  return ck;
}

RawTensor& find_tensor(HfCheckpoint& ck, const std::string& name) {
  for (auto& [file, tensors] : ck.shards) {
    for (RawTensor& t : tensors) {
      if (t.name == name) return t;
    }
  }
  raise("find_tensor: no tensor '{}' in the checkpoint", name);
}

void erase_tensor(HfCheckpoint& ck, const std::string& name) {
  for (auto& [file, tensors] : ck.shards) {
    const auto it = std::find_if(tensors.begin(), tensors.end(), [&](const RawTensor& t) { return t.name == name; });
    if (it != tensors.end()) {
      tensors.erase(it);
      return;
    }
  }
  raise("erase_tensor: no tensor '{}' in the checkpoint", name);
}

void write_hf_checkpoint(const std::filesystem::path& dir, const HfCheckpoint& ck) {
  write_json(dir / "config.json", ck.config);
  json weight_map = json::object();
  size_t total = 0;
  for (const auto& [file, tensors] : ck.shards) {
    write_safetensors(dir / file, tensors);
    for (const RawTensor& t : tensors) {
      weight_map[t.name] = file;
      total += t.bytes.size();
    }
  }
  if (ck.shards.size() > 1) {
    write_json(dir / "model.safetensors.index.json",
               json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  }
}

void write_tiny_hf_model(const std::filesystem::path& dir, const TinyHfSpec& spec) {
  write_hf_checkpoint(dir, make_tiny_hf(spec));
}

void write_safetensors(const std::filesystem::path& file, const std::vector<RawTensor>& tensors) {
  json header = json::object();
  std::vector<std::byte> data;
  for (const RawTensor& t : tensors) {
    const uint64_t begin = data.size(), end = begin + t.bytes.size();
    const auto [b, e] = t.offsets.value_or(std::pair{begin, end});
    header[t.name] = json{{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {b, e}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  header["__metadata__"] = json{{"format", "pt"}};
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // like the reference writer: data starts 8-aligned
  write_safetensors_raw(file, text, data);
}

void write_safetensors_raw(const std::filesystem::path& file, const std::string& header,
                           std::span<const std::byte> data) {
  std::vector<std::byte> bytes;
  append_le(bytes, static_cast<uint64_t>(header.size()));
  const auto* h = reinterpret_cast<const std::byte*>(header.data());
  bytes.insert(bytes.end(), h, h + header.size());
  bytes.insert(bytes.end(), data.begin(), data.end());
  write_bytes(file, bytes);
}

void write_json(const std::filesystem::path& file, const json& value) { write_text(file, value.dump(2)); }

json read_json(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  RA_REQUIRE(in.good(), "cannot open {}", file.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return json::parse(buffer.str());
}

void write_text(const std::filesystem::path& file, const std::string& text) {
  write_bytes(file, std::as_bytes(std::span(text.data(), text.size())));
}

}  // namespace ra::test
