#pragma once
// A Llama model in memory: its config and float32 weights, in the Hugging Face conventions
// (rotate-half RoPE, row-major [out_features][in_features] projection matrices).

#include <cstdint>
#include <string>
#include <vector>

#include "gpu_worker/model/model_config.h"

namespace ra {

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]
  std::vector<float> wq;         // [n_heads * head_dim][hidden]
  std::vector<float> wk;         // [n_kv_heads * head_dim][hidden]
  std::vector<float> wv;         // [n_kv_heads * head_dim][hidden]
  std::vector<float> wo;         // [hidden][n_heads * head_dim]
  std::vector<float> ffn_norm;   // [hidden]
  std::vector<float> w_gate;     // [intermediate][hidden]
  std::vector<float> w_up;       // [intermediate][hidden]
  std::vector<float> w_down;     // [hidden][intermediate]
};

struct ModelWeights {
  std::vector<float> embed;       // [vocab][hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab][hidden]; empty when tied to embed

  const std::vector<float>& output_matrix() const { return lm_head.empty() ? embed : lm_head; }
};

struct Model {
  ModelConfig config;
  ModelWeights weights;
  std::string source;       // where it came from, for messages
  std::string weight_dtype; // the checkpoint's storage dtype ("BF16", "F32", ...): the KV dtype on CPU
};

// Throws ra::Error naming `model.source` when a weight's size disagrees with the config.
void check_weight_shapes(const Model& model);

}  // namespace ra
