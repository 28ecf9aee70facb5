#include "gpu_worker/model/llama2c_loader.h"

#include <array>
#include <cstring>

#include "common/error.h"
#include "gpu_worker/model/mapped_file.h"

namespace ra {

std::vector<float> interleaved_to_half_rotation(const std::vector<float>& w, int64_t n_heads,
                                                int64_t head_dim, int64_t cols) {
  std::vector<float> out(w.size());
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t parity = 0; parity < 2; ++parity) {
        const float* src = w.data() + (h * head_dim + 2 * j + parity) * cols;
        float* dst = out.data() + (h * head_dim + parity * half + j) * cols;
        std::memcpy(dst, src, static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
  return out;
}

Model load_llama2c_model(const std::filesystem::path& path) {
  const MappedFile file(path);
  const std::string where = path.string();
  const auto bytes = file.bytes();
  constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);
  RA_REQUIRE(bytes.size() >= kHeaderBytes, "{}: truncated llama2.c checkpoint ({} bytes, header needs {})",
             where, bytes.size(), kHeaderBytes);
  std::array<int32_t, 7> h{};
  std::memcpy(h.data(), bytes.data(), kHeaderBytes);
  const char* names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    RA_REQUIRE(h[i] != 0 && (i == 5 || h[i] > 0), "{}: header field '{}' is {}; not a llama2.c checkpoint",
               where, names[i], h[i]);
  }

  Model m;
  m.source = where;
  m.weight_dtype = "F32";
  ModelConfig& c = m.config;
  c.hidden_size = h[0];
  c.intermediate_size = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  const bool shared_classifier = h[5] > 0;
  c.vocab_size = shared_classifier ? h[5] : -int64_t{h[5]};
  c.max_position_embeddings = h[6];
  RA_REQUIRE(c.hidden_size % c.n_heads == 0, "{}: header dim ({}) is not a multiple of n_heads ({})", where,
             c.hidden_size, c.n_heads);
  c.head_dim = c.hidden_size / c.n_heads;
  c.rope_theta = 10000.0f;
  c.rms_norm_eps = 1e-5f;
  c.tie_word_embeddings = shared_classifier;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.validate(where);

  const int64_t L = c.n_layers, D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim();
  const int64_t rope_table = c.max_position_embeddings * c.head_dim / 2;  // freq_cis_real, then imag
  // Header fields are < 2^31 each; bound the size in floating point before the exact int64 sum so a
  // hostile header cannot overflow it.
  auto total_of = [&](auto zero) {
    using T = decltype(zero);
    return T(V) * D + T(L) * D + T(L) * D * qd + T(2) * L * D * kvd + T(L) * qd * D + T(L) * D +
           T(3) * L * D * F + T(D) + T(2) * rope_table + (shared_classifier ? T(0) : T(V) * D);
  };
  RA_REQUIRE(total_of(0.0) < 0x1p60, "{}: the header implies an implausible checkpoint of {:.3g} floats", where,
             total_of(0.0));
  const int64_t total = total_of(int64_t{0});
  const size_t expected = kHeaderBytes + static_cast<size_t>(total) * sizeof(float);
  RA_REQUIRE(bytes.size() >= expected,
             "{}: truncated llama2.c checkpoint: the header implies {} bytes, the file has {}", where,
             expected, bytes.size());
  RA_REQUIRE(bytes.size() == expected,
             "{}: {} unexpected trailing bytes after the weights the header implies; is this a newer "
             "llama2.c export version (only the legacy format is supported)?",
             where, bytes.size() - expected);

  const auto* cursor = reinterpret_cast<const float*>(bytes.data() + kHeaderBytes);
  auto take = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    std::memcpy(v.data(), cursor, static_cast<size_t>(n) * sizeof(float));
    cursor += n;
    return v;
  };
  // Per-layer tensors are stored tensor-major: all layers' wq, then all layers' wk, and so on.
  auto take_layers = [&](std::vector<float> LayerWeights::*member, int64_t per_layer) {
    for (auto& layer : m.weights.layers) layer.*member = take(per_layer);
  };
  m.weights.layers.resize(static_cast<size_t>(L));
  m.weights.embed = take(V * D);
  take_layers(&LayerWeights::attn_norm, D);
  take_layers(&LayerWeights::wq, qd * D);
  take_layers(&LayerWeights::wk, kvd * D);
  take_layers(&LayerWeights::wv, kvd * D);
  take_layers(&LayerWeights::wo, D * qd);
  take_layers(&LayerWeights::ffn_norm, D);
  take_layers(&LayerWeights::w_gate, F * D);
  take_layers(&LayerWeights::w_down, D * F);
  take_layers(&LayerWeights::w_up, F * D);
  m.weights.final_norm = take(D);
  cursor += 2 * rope_table;  // precomputed RoPE tables; recomputed from theta instead
  if (!shared_classifier) m.weights.lm_head = take(V * D);

  for (auto& layer : m.weights.layers) {
    layer.wq = interleaved_to_half_rotation(layer.wq, c.n_heads, c.head_dim, D);
    layer.wk = interleaved_to_half_rotation(layer.wk, c.n_kv_heads, c.head_dim, D);
  }
  check_weight_shapes(m);
  return m;
}

}  // namespace ra
