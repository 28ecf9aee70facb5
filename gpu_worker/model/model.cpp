#include "gpu_worker/model/model.h"

#include "common/error.h"

namespace ra {

void check_weight_shapes(const Model& m) {
  const ModelConfig& c = m.config;
  auto check = [&](const std::vector<float>& w, int64_t rows, int64_t cols, const std::string& name) {
    RA_REQUIRE(static_cast<int64_t>(w.size()) == rows * cols,
               "{}: weight '{}' has {} elements, expected {} x {}", m.source, name, w.size(), rows, cols);
  };
  const auto& w = m.weights;
  check(w.embed, c.vocab_size, c.hidden_size, "embed");
  check(w.final_norm, 1, c.hidden_size, "final_norm");
  if (!w.lm_head.empty()) check(w.lm_head, c.vocab_size, c.hidden_size, "lm_head");
  RA_REQUIRE(static_cast<int64_t>(w.layers.size()) == c.n_layers, "{}: {} layers loaded, config says {}",
             m.source, w.layers.size(), c.n_layers);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const auto& l = w.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    check(l.attn_norm, 1, c.hidden_size, p + "attn_norm");
    check(l.wq, c.q_dim(), c.hidden_size, p + "wq");
    check(l.wk, c.kv_dim(), c.hidden_size, p + "wk");
    check(l.wv, c.kv_dim(), c.hidden_size, p + "wv");
    check(l.wo, c.hidden_size, c.q_dim(), p + "wo");
    check(l.ffn_norm, 1, c.hidden_size, p + "ffn_norm");
    check(l.w_gate, c.intermediate_size, c.hidden_size, p + "w_gate");
    check(l.w_up, c.intermediate_size, c.hidden_size, p + "w_up");
    check(l.w_down, c.hidden_size, c.intermediate_size, p + "w_down");
  }
}

}  // namespace ra
