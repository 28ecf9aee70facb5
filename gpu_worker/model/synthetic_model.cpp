#include "gpu_worker/model/synthetic_model.h"

#include <cctype>
#include <cmath>

#include <fmt/format.h>

#include "common/splitmix64.h"

namespace ra {
namespace {

// Box-Muller normals from the portable generator (common/splitmix64.h).
float normal(SplitMix64& rng) {
  const double u1 = rng.unit() + 0x1p-60, u2 = rng.unit();
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

std::vector<float> gaussian(SplitMix64& rng, int64_t rows, int64_t cols) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
  for (float& x : w) x = normal(rng) * scale;
  return w;
}

}  // namespace

ModelConfig synthetic_model_config(const SyntheticModelSpec& s) {
  ModelConfig c;
  c.hidden_size = s.hidden_size;
  c.n_layers = s.n_layers;
  c.n_heads = s.n_heads;
  c.n_kv_heads = s.n_kv_heads;
  c.head_dim = s.head_dim;
  c.intermediate_size = s.intermediate_size;
  c.vocab_size = 258;
  c.max_position_embeddings = s.max_position_embeddings;
  c.rope_theta = 500000.0f;
  c.rms_norm_eps = 1e-5f;
  c.bos_token_id = 256;
  c.eos_token_id = 257;
  c.validate(fmt::format("synthetic(seed={})", s.seed));
  return c;
}

Model make_synthetic_model(const SyntheticModelSpec& s) {
  Model m;
  m.source = fmt::format("synthetic(seed={})", s.seed);
  m.weight_dtype = "F32";
  m.config = synthetic_model_config(s);
  const ModelConfig& c = m.config;

  SplitMix64 rng(s.seed);
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  m.weights.embed = gaussian(rng, c.vocab_size, D);
  for (float& x : m.weights.embed) x *= std::sqrt(static_cast<float>(D));  // unit-scale embeddings
  m.weights.layers.resize(static_cast<size_t>(c.n_layers));
  for (auto& l : m.weights.layers) {
    l.attn_norm.assign(static_cast<size_t>(D), 1.0f);
    l.wq = gaussian(rng, c.q_dim(), D);
    l.wk = gaussian(rng, c.kv_dim(), D);
    l.wv = gaussian(rng, c.kv_dim(), D);
    l.wo = gaussian(rng, D, c.q_dim());
    l.ffn_norm.assign(static_cast<size_t>(D), 1.0f);
    l.w_gate = gaussian(rng, F, D);
    l.w_up = gaussian(rng, F, D);
    l.w_down = gaussian(rng, D, F);
  }
  m.weights.final_norm.assign(static_cast<size_t>(D), 1.0f);
  m.weights.lm_head = gaussian(rng, c.vocab_size, D);
  for (int64_t t = 0; t < c.vocab_size; ++t) {
    const bool printable = t < 128 && (std::isprint(static_cast<int>(t)) || t == '\n');
    if (!printable) std::fill_n(m.weights.lm_head.begin() + t * D, D, 0.0f);
  }
  check_weight_shapes(m);
  return m;
}

std::string make_synthetic_prompt(int64_t bytes, uint64_t seed) {
  static const char* kWords[] = {"the",    "cache",  "query",  "key",     "value",  "attention", "graph",
                                 "index",  "memory", "token",  "layer",   "head",   "retrieval", "window",
                                 "sink",   "merge",  "search", "nearest", "vector", "decode"};
  static const char* kNames[] = {"Ada", "Grace", "Alan", "Edsger"};
  SplitMix64 rng(seed);
  std::string out;
  out.reserve(static_cast<size_t>(bytes) + 128);
  const std::string question = fmt::format("What is the special magic number for {}? The special magic number for {} is ",
                                           kNames[0], kNames[0]);
  const int64_t body = std::max<int64_t>(0, bytes - static_cast<int64_t>(question.size()));
  int64_t next_fact = body / 5;
  int fact = 0;
  while (static_cast<int64_t>(out.size()) < body) {
    if (fact < 4 && static_cast<int64_t>(out.size()) >= next_fact) {
      out += fmt::format("The special magic number for {} is {}. ", kNames[fact], 1000000 + rng.next() % 9000000);
      ++fact;
      next_fact += body / 5;
      continue;
    }
    out += kWords[rng.next() % std::size(kWords)];
    out += rng.next() % 9 == 0 ? ". " : " ";
  }
  out.resize(static_cast<size_t>(body));
  return out + question;
}

}  // namespace ra
