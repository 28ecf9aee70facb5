#include "gpu_worker/model/hf_loader.h"

#include <array>

#include "common/error.h"
#include "gpu_worker/model/safetensors.h"

namespace ra {

Model load_hf_model(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  RA_REQUIRE(std::filesystem::exists(config_path), "{}: no config.json; not a Hugging Face checkpoint",
             dir.string());
  Model m;
  m.source = dir.string();
  m.config = parse_hf_config(config_path);
  const ModelConfig& c = m.config;

  const SafetensorsCheckpoint ckpt(dir);
  auto load = [&](const std::string& name, std::initializer_list<int64_t> shape) {
    const std::vector<int64_t> dims(shape);
    return to_float32(ckpt.get(name), dims);
  };

  const TensorView& embed = ckpt.get("model.embed_tokens.weight");
  m.weight_dtype = embed.dtype_string;
  m.weights.embed = load("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  m.weights.final_norm = load("model.norm.weight", {c.hidden_size});
  if (!c.tie_word_embeddings) {
    m.weights.lm_head = load("lm_head.weight", {c.vocab_size, c.hidden_size});
  }
  m.weights.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = m.weights.layers[static_cast<size_t>(i)];
    l.attn_norm = load(p + "input_layernorm.weight", {c.hidden_size});
    l.wq = load(p + "self_attn.q_proj.weight", {c.q_dim(), c.hidden_size});
    l.wk = load(p + "self_attn.k_proj.weight", {c.kv_dim(), c.hidden_size});
    l.wv = load(p + "self_attn.v_proj.weight", {c.kv_dim(), c.hidden_size});
    l.wo = load(p + "self_attn.o_proj.weight", {c.hidden_size, c.q_dim()});
    l.ffn_norm = load(p + "post_attention_layernorm.weight", {c.hidden_size});
    l.w_gate = load(p + "mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size});
    l.w_up = load(p + "mlp.up_proj.weight", {c.intermediate_size, c.hidden_size});
    l.w_down = load(p + "mlp.down_proj.weight", {c.hidden_size, c.intermediate_size});
  }
  check_weight_shapes(m);
  return m;
}

}  // namespace ra
