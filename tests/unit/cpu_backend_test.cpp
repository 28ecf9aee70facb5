// The CPU backend is the project's reference, so it is checked here against a second, deliberately naive
// Llama forward pass written from the Hugging Face definition: plain loops, double accumulation, no KV
// cache, no BLAS, and RoPE frequencies computed independently of gpu_worker/model/rope.cpp.
//
// Three small models are used: a synthetic one (make_synthetic_model), a hand-built one with tied
// embeddings, a 3:1 GQA ratio, q_dim != hidden and non-trivial norm weights, and a hand-built one with
// Llama-3.1 RoPE scaling.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/decode/generator.h"
#include "gpu_worker/decode/sampler.h"
#include "gpu_worker/model/model.h"
#include "gpu_worker/model/rope.h"
#include "gpu_worker/model/synthetic_model.h"
#include "gpu_worker/model/tokenizer.h"
#include "tests/support/small_model.h"

namespace ra {
namespace {

using Vec = std::vector<double>;

// ------------------------------------------------------------------------------------------------
// The naive reference forward pass.
// ------------------------------------------------------------------------------------------------

// y = W x, with W: [rows][cols] float32 row-major (the HF [out_features][in_features] layout).
Vec matvec(const std::vector<float>& w, int64_t rows, int64_t cols, const Vec& x) {
  Vec y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0.0;
    for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(w[r * cols + c]) * x[c];
    y[r] = acc;
  }
  return y;
}

// weight * x / sqrt(mean(x^2) + eps)
Vec rms_norm(const Vec& x, const std::vector<float>& weight, double eps) {
  double sum_sq = 0.0;
  for (double v : x) sum_sq += v * v;
  const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<double>(weight[i]) * x[i] * inv_rms;
  return y;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// transformers' default inv_freq = 1 / theta^(2j / head_dim), then, for rope_type "llama3",
// _compute_llama3_parameters: long wavelengths are divided by `factor`, short ones kept, and the band
// in between interpolated smoothly. Written in the order of the transformers code (torch.where chain).
Vec reference_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  Vec inv_freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    inv_freq[j] = std::pow(static_cast<double>(c.rope_theta), -2.0 * j / static_cast<double>(c.head_dim));
  }
  if (!c.rope_scaling.llama3) return inv_freq;

  const double factor = c.rope_scaling.factor;
  const double low_freq_factor = c.rope_scaling.low_freq_factor;
  const double high_freq_factor = c.rope_scaling.high_freq_factor;
  const double old_context_len = static_cast<double>(c.rope_scaling.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / low_freq_factor;
  const double high_freq_wavelen = old_context_len / high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    const double llama = wavelen > low_freq_wavelen ? f / factor : f;
    const double smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
    const double smoothed = (1.0 - smooth) * llama / factor + smooth * llama;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = is_medium ? smoothed : llama;
  }
  return inv_freq;
}

// HF apply_rotary_pos_emb on one head x[offset, offset + head_dim):
//   x * cos(emb) + rotate_half(x) * sin(emb), emb = cat(freqs, freqs), rotate_half(x) = cat(-x2, x1).
void rope_in_place(Vec& x, int64_t offset, int64_t head_dim, int64_t position, const Vec& inv_freq) {
  const int64_t half = head_dim / 2;
  Vec head(x.begin() + offset, x.begin() + offset + head_dim);
  for (int64_t d = 0; d < head_dim; ++d) {
    const double angle = static_cast<double>(position) * inv_freq[d % half];
    const double rotated = d < half ? -head[d + half] : head[d - half];
    x[offset + d] = head[d] * std::cos(angle) + rotated * std::sin(angle);
  }
}

// Logits at every position of `tokens` run from an empty context: [tokens.size()][vocab].
std::vector<Vec> reference_forward(const Model& model, std::span<const int32_t> tokens) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t D = c.hidden_size, hd = c.head_dim, F = c.intermediate_size;
  const int64_t q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const int64_t heads_per_kv = c.n_heads / c.n_kv_heads;
  const double eps = c.rms_norm_eps;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const Vec inv_freq = reference_inv_freq(c);

  std::vector<Vec> x(static_cast<size_t>(T));  // residual stream, [T][D]
  for (int64_t t = 0; t < T; ++t) {
    x[t] = Vec(w.embed.begin() + tokens[t] * D, w.embed.begin() + (tokens[t] + 1) * D);
  }

  for (const LayerWeights& lw : w.layers) {
    // Self-attention block.
    std::vector<Vec> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const Vec h = rms_norm(x[t], lw.attn_norm, eps);
      q[t] = matvec(lw.wq, q_dim, D, h);
      k[t] = matvec(lw.wk, kv_dim, D, h);
      v[t] = matvec(lw.wv, kv_dim, D, h);
      for (int64_t head = 0; head < c.n_heads; ++head) rope_in_place(q[t], head * hd, hd, t, inv_freq);
      for (int64_t head = 0; head < c.n_kv_heads; ++head) rope_in_place(k[t], head * hd, hd, t, inv_freq);
    }
    for (int64_t t = 0; t < T; ++t) {
      Vec attn(static_cast<size_t>(q_dim), 0.0);
      for (int64_t head = 0; head < c.n_heads; ++head) {
        const int64_t kv_head = head / heads_per_kv;
        Vec scores(static_cast<size_t>(t + 1));  // causal: keys 0..t
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0.0;
          for (int64_t d = 0; d < hd; ++d) dot += q[t][head * hd + d] * k[s][kv_head * hd + d];
          scores[s] = dot * scale;
        }
        const double max_score = *std::max_element(scores.begin(), scores.end());
        double denom = 0.0;
        for (double& sc : scores) denom += (sc = std::exp(sc - max_score));
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t d = 0; d < hd; ++d) attn[head * hd + d] += scores[s] / denom * v[s][kv_head * hd + d];
        }
      }
      const Vec o = matvec(lw.wo, D, q_dim, attn);
      for (int64_t i = 0; i < D; ++i) x[t][i] += o[i];
    }
    // SwiGLU MLP block.
    for (int64_t t = 0; t < T; ++t) {
      const Vec h = rms_norm(x[t], lw.ffn_norm, eps);
      const Vec gate = matvec(lw.w_gate, F, D, h);
      const Vec up = matvec(lw.w_up, F, D, h);
      Vec act(static_cast<size_t>(F));
      for (int64_t i = 0; i < F; ++i) act[i] = silu(gate[i]) * up[i];
      const Vec down = matvec(lw.w_down, D, F, act);
      for (int64_t i = 0; i < D; ++i) x[t][i] += down[i];
    }
  }

  const std::vector<float>& out = c.tie_word_embeddings ? w.embed : w.lm_head;
  std::vector<Vec> logits(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) logits[t] = matvec(out, c.vocab_size, D, rms_norm(x[t], w.final_norm, eps));
  return logits;
}

// ------------------------------------------------------------------------------------------------
// Models and helpers.
// ------------------------------------------------------------------------------------------------

Model small_synthetic_model() { return make_synthetic_model(test::small_synthetic_spec(160, 512, 7)); }

// Random weights N(0, 1/fan_in), embeddings N(0, 1), norm weights 1 + N(0, 0.2^2).
Model random_model(const ModelConfig& config, uint64_t seed) {
  Model m;
  m.config = config;
  m.source = "hand-built test model";
  m.weight_dtype = "F32";
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto matrix = [&](int64_t rows, int64_t cols, float scale) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& e : v) e = normal(rng) * scale;
    return v;
  };
  auto norm = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& e : v) e = 1.0f + 0.2f * normal(rng);
    return v;
  };
  const ModelConfig& c = m.config;
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
  m.weights.embed = matrix(c.vocab_size, D, 1.0f);
  m.weights.layers.resize(static_cast<size_t>(c.n_layers));
  for (LayerWeights& l : m.weights.layers) {
    l.attn_norm = norm(D);
    l.wq = matrix(c.q_dim(), D, inv_sqrt(D));
    l.wk = matrix(c.kv_dim(), D, inv_sqrt(D));
    l.wv = matrix(c.kv_dim(), D, inv_sqrt(D));
    l.wo = matrix(D, c.q_dim(), inv_sqrt(c.q_dim()));
    l.ffn_norm = norm(D);
    l.w_gate = matrix(F, D, inv_sqrt(D));
    l.w_up = matrix(F, D, inv_sqrt(D));
    l.w_down = matrix(D, F, inv_sqrt(F));
  }
  m.weights.final_norm = norm(D);
  if (!c.tie_word_embeddings) m.weights.lm_head = matrix(c.vocab_size, D, inv_sqrt(D));
  c.validate(m.source);
  check_weight_shapes(m);
  return m;
}

// Tied embeddings, GQA 6:2 (group of 3), q_dim 72 != hidden 48, an odd vocabulary and an eps large
// enough to matter.
Model tied_gqa_model() {
  return random_model({.hidden_size = 48, .n_layers = 3, .n_heads = 6, .n_kv_heads = 2, .head_dim = 12,
                       .intermediate_size = 80, .vocab_size = 97, .max_position_embeddings = 128,
                       .rope_theta = 10000.0f, .rms_norm_eps = 1e-2f, .tie_word_embeddings = true},
                      11);
}

// Llama-3.1 RoPE scaling with factor 8, low 1, high 4 and an original context of 64. With theta 10000
// and head_dim 16 the wavelengths 2*pi*theta^(2j/16) are 6.3, 19.9, 62.8, 199, ... so j = 0 is kept,
// j = 1, 2 are interpolated (16 <= wavelength <= 64) and j >= 3 are divided by 8.
ModelConfig llama3_config() {
  return {.hidden_size = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 1, .head_dim = 16, .intermediate_size = 64,
          .vocab_size = 50, .max_position_embeddings = 256, .rope_theta = 10000.0f,
          .rope_scaling = {.llama3 = true, .factor = 8.0f, .low_freq_factor = 1.0f, .high_freq_factor = 4.0f,
                           .original_max_position_embeddings = 64}};
}

Model llama3_model() { return random_model(llama3_config(), 23); }

// A deterministic prompt of `n` ids in [0, vocab).
std::vector<int32_t> test_prompt(int64_t n, int64_t vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>((i * 37 + 11 + i * i) % vocab);
  return p;
}

std::unique_ptr<Backend> cpu_backend(const Model& m, int64_t prefill_chunk = 256, int64_t max_positions = 0) {
  BackendOptions o;
  o.prefill_chunk = prefill_chunk;
  o.max_positions = max_positions;
  return make_cpu_backend(m, o);
}

std::vector<float> run(Backend& b, std::span<const int32_t> tokens) {
  std::vector<float> logits(static_cast<size_t>(b.config().vocab_size));
  b.forward(tokens, logits);
  return logits;
}

// max_i |actual_i − expected_i| / max_i |expected_i|: the error relative to the logits' scale.
template <typename T>
double relative_error(std::span<const float> actual, std::span<const T> expected) {
  EXPECT_EQ(actual.size(), expected.size());
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < std::min(actual.size(), expected.size()); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(actual[i]) - static_cast<double>(expected[i])));
    scale = std::max(scale, std::abs(static_cast<double>(expected[i])));
  }
  EXPECT_GT(scale, 0.0) << "all-zero reference logits would make the comparison vacuous";
  return diff / scale;
}
double relative_error(const std::vector<float>& a, const Vec& e) { return relative_error<double>(a, e); }
double relative_error(const std::vector<float>& a, const std::vector<float>& e) {
  return relative_error<float>(a, e);
}

int32_t reference_argmax(const Vec& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Relative errors seen on these models are below 1e-6; a wrong GQA mapping, RoPE convention, score
// scale, causal mask or SwiGLU order gives 0.04 or more, and a dropped rms_norm_eps gives 1e-5 to 6e-3.
constexpr double kReferenceTolerance = 1e-5;  // float32 backend vs double reference
constexpr double kSamePathTolerance = 1e-5;   // float32 vs float32, different chunking / BLAS calls

// ------------------------------------------------------------------------------------------------
// RoPE frequencies.
// ------------------------------------------------------------------------------------------------

TEST(RopeFrequencies, DefaultMatchesPowFormula) {
  ModelConfig c = llama3_config();
  c.rope_scaling.llama3 = false;
  c.rope_theta = 500000.0f;
  c.head_dim = 128;
  const std::vector<float> inv = rope_inverse_frequencies(c);
  ASSERT_EQ(inv.size(), 64u);
  for (size_t j = 0; j < inv.size(); ++j) {
    const double expected = std::pow(500000.0, -2.0 * static_cast<double>(j) / 128.0);
    EXPECT_NEAR(inv[j], expected, 2e-6 * expected) << "j=" << j;
  }
}

TEST(RopeFrequencies, Llama3ScalingMatchesTransformers) {
  const ModelConfig c = llama3_config();
  const std::vector<float> inv = rope_inverse_frequencies(c);
  const Vec expected = reference_inv_freq(c);
  ASSERT_EQ(inv.size(), 8u);
  for (size_t j = 0; j < inv.size(); ++j) {
    EXPECT_NEAR(inv[j], expected[j], 2e-6 * expected[j]) << "j=" << j;
  }
  // The configuration really covers all three regimes (see llama3_config).
  ModelConfig plain = c;
  plain.rope_scaling.llama3 = false;
  const Vec unscaled = reference_inv_freq(plain);
  EXPECT_DOUBLE_EQ(expected[0], unscaled[0]);                        // high frequency: kept
  for (size_t j : {1u, 2u}) {                                         // medium: strictly in between
    EXPECT_LT(expected[j], unscaled[j] * (1.0 - 1e-3)) << "j=" << j;
    EXPECT_GT(expected[j], unscaled[j] / 8.0 * (1.0 + 1e-3)) << "j=" << j;
  }
  for (size_t j = 3; j < 8; ++j) EXPECT_DOUBLE_EQ(expected[j], unscaled[j] / 8.0) << "j=" << j;  // low: /8
  // Spot values of the smoothing: wavelength w = 2*pi*10000^(2j/16), smooth = (64/w - 1) / 3.
  for (size_t j : {1u, 2u}) {
    const double f = std::pow(10000.0, -2.0 * static_cast<double>(j) / 16.0);
    const double smooth = (64.0 / (2.0 * std::numbers::pi / f) - 1.0) / 3.0;
    EXPECT_NEAR(inv[j], (1.0 - smooth) * f / 8.0 + smooth * f, 2e-6 * f) << "j=" << j;
  }
}

TEST(RopeFrequencies, TableHoldsCosSinOfPositionTimesFrequency) {
  const ModelConfig c = llama3_config();
  const RopeTable table = make_rope_table(c, 100);
  const Vec inv = reference_inv_freq(c);
  ASSERT_EQ(table.half_dim, 8);
  ASSERT_EQ(table.cos.size(), 800u);
  for (int64_t p : {0, 1, 63, 99}) {
    for (int64_t j = 0; j < 8; ++j) {
      EXPECT_NEAR(table.cos[p * 8 + j], std::cos(p * inv[j]), 2e-5) << "p=" << p << " j=" << j;
      EXPECT_NEAR(table.sin[p * 8 + j], std::sin(p * inv[j]), 2e-5) << "p=" << p << " j=" << j;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The backend against the reference, on each model.
// ------------------------------------------------------------------------------------------------

enum class TestModel { kSynthetic, kTiedGqa, kLlama3 };

std::string model_name(const testing::TestParamInfo<TestModel>& info) {
  constexpr const char* kNames[] = {"Synthetic", "TiedGqa", "Llama3Rope"};  // in TestModel's order
  return kNames[static_cast<int>(info.param)];
}

class CpuBackendVsReference : public testing::TestWithParam<TestModel> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case TestModel::kSynthetic: model_ = small_synthetic_model(); break;
      case TestModel::kTiedGqa: model_ = tied_gqa_model(); break;
      case TestModel::kLlama3: model_ = llama3_model(); break;
    }
    // Longer than the Llama-3 model's original context of 64, and not a multiple of 3.
    prompt_ = test_prompt(kPromptLength, model_.config.vocab_size);
  }

  static constexpr int64_t kPromptLength = 70;
  Model model_;
  std::vector<int32_t> prompt_;
};

TEST_P(CpuBackendVsReference, PrefillLogitsMatchReference) {
  const std::vector<Vec> expected = reference_forward(model_, prompt_);
  auto backend = cpu_backend(model_);
  const std::vector<float> logits = run(*backend, prompt_);
  EXPECT_EQ(backend->position(), kPromptLength);
  EXPECT_LE(relative_error(logits, expected.back()), kReferenceTolerance);
}

TEST_P(CpuBackendVsReference, EveryDecodeStepMatchesReference) {
  const std::vector<Vec> expected = reference_forward(model_, prompt_);
  auto backend = cpu_backend(model_);
  for (int64_t t = 0; t < kPromptLength; ++t) {
    const std::vector<float> logits = run(*backend, std::span(prompt_).subspan(t, 1));
    ASSERT_EQ(backend->position(), t + 1);
    ASSERT_LE(relative_error(logits, expected[t]), kReferenceTolerance) << "position " << t;
  }
}

TEST_P(CpuBackendVsReference, TokenByTokenEqualsOneShotPrefill) {
  auto one_shot = cpu_backend(model_);
  const std::vector<float> prefill = run(*one_shot, prompt_);
  auto stepwise = cpu_backend(model_);
  std::vector<float> last;
  for (int32_t token : prompt_) last = run(*stepwise, std::span(&token, 1));
  EXPECT_LE(relative_error(last, prefill), kSamePathTolerance);
  // Uneven multi-token calls on a non-empty cache too: 1 + 30 + 39.
  auto mixed = cpu_backend(model_);
  run(*mixed, std::span(prompt_).subspan(0, 1));
  run(*mixed, std::span(prompt_).subspan(1, 30));
  const std::vector<float> split = run(*mixed, std::span(prompt_).subspan(31));
  EXPECT_EQ(mixed->position(), kPromptLength);
  EXPECT_LE(relative_error(split, prefill), kSamePathTolerance);
}

TEST_P(CpuBackendVsReference, PrefillChunkSizesAgree) {
  auto reference_chunking = cpu_backend(model_, 256);
  const std::vector<float> expected = run(*reference_chunking, prompt_);
  for (int64_t chunk : {1, 3}) {
    auto backend = cpu_backend(model_, chunk);
    const std::vector<float> logits = run(*backend, prompt_);
    EXPECT_EQ(backend->position(), kPromptLength);
    EXPECT_LE(relative_error(logits, expected), kSamePathTolerance) << "prefill_chunk " << chunk;
  }
}

TEST_P(CpuBackendVsReference, ResetThenRerunIsIdentical) {
  auto backend = cpu_backend(model_, 16);
  const std::vector<float> first = run(*backend, prompt_);
  backend->reset();
  EXPECT_EQ(backend->position(), 0);
  const std::vector<float> second = run(*backend, prompt_);
  EXPECT_EQ(first, second);
  // A shorter, different prompt after reset sees none of the old cache.
  const std::vector<int32_t> other = test_prompt(9, model_.config.vocab_size - 1);
  backend->reset();
  const std::vector<float> after_reset = run(*backend, other);
  auto fresh = cpu_backend(model_, 16);
  EXPECT_EQ(after_reset, run(*fresh, other));
}

TEST_P(CpuBackendVsReference, GreedyGenerateFollowsReferenceArgmax) {
  // A tokenizer that prints each id as decimal text, so the streamed output gives back the ids.
  class IdTokenizer final : public Tokenizer {
   public:
    std::vector<int32_t> encode(std::string_view) const override { return {}; }
    std::string decode(int32_t, int32_t token) const override { return std::to_string(token); }
    int64_t vocab_size() const override { return 0; }
    std::string name() const override { return "ids"; }
  };
  const ModelConfig& c = model_.config;
  const std::vector<int32_t> prompt(prompt_.begin(), prompt_.begin() + 12);
  constexpr int64_t kSteps = 8;

  // Argmax chaining of the reference, recomputed from scratch each step; stops at EOS/BOS as generate does.
  std::vector<int32_t> sequence = prompt, expected;
  for (int64_t i = 0; i < kSteps; ++i) {
    const Vec logits = reference_forward(model_, sequence).back();
    const int32_t best = reference_argmax(logits);
    Vec sorted = logits;
    std::sort(sorted.rbegin(), sorted.rend());
    ASSERT_GT(sorted[0] - sorted[1], 1e-3 * std::abs(sorted[0])) << "near-tie at step " << i
                                                                  << ": choose another prompt";
    if (best == c.eos_token_id || best == c.bos_token_id) break;
    expected.push_back(best);
    sequence.push_back(best);
  }
  ASSERT_GE(expected.size(), 3u) << "the reference stops too early for a meaningful check";

  auto backend = cpu_backend(model_, 5);
  run(*backend, prompt_);  // generate() must reset the cache itself
  GenerateOptions options;
  options.max_new_tokens = kSteps;
  options.temperature = 0.0f;
  std::vector<int32_t> generated;
  const GenerateStats stats = generate(*backend, IdTokenizer{}, prompt, options,
                                       [&](std::string_view text) { generated.push_back(std::stoi(std::string(text))); });
  EXPECT_EQ(generated, expected);
  EXPECT_EQ(stats.prompt_tokens, 12);
  EXPECT_EQ(stats.generated_tokens, static_cast<int64_t>(expected.size()));
  EXPECT_FALSE(stats.hit_context_limit);
}

INSTANTIATE_TEST_SUITE_P(Models, CpuBackendVsReference,
                         testing::Values(TestModel::kSynthetic, TestModel::kTiedGqa, TestModel::kLlama3),
                         model_name);

// ------------------------------------------------------------------------------------------------
// Contract: capacity and errors.
// ------------------------------------------------------------------------------------------------

TEST(CpuBackend, CapacityDefaultsToModelContext) {
  const Model m = tied_gqa_model();
  EXPECT_EQ(cpu_backend(m)->max_positions(), 128);
  EXPECT_EQ(cpu_backend(m, 256, 40)->max_positions(), 40);
  EXPECT_EQ(cpu_backend(m)->name(), "cpu");
  EXPECT_THROW(cpu_backend(m, 256, 129), Error);
}

TEST(CpuBackend, ForwardBeyondMaxPositionsThrowsAndKeepsState) {
  const Model m = tied_gqa_model();
  const std::vector<int32_t> prompt = test_prompt(8, m.config.vocab_size);
  auto backend = cpu_backend(m, 256, 8);
  std::vector<float> logits(static_cast<size_t>(m.config.vocab_size));
  EXPECT_THROW(backend->forward(test_prompt(9, m.config.vocab_size), logits), Error);
  EXPECT_EQ(backend->position(), 0);
  backend->forward(std::span(prompt).subspan(0, 5), logits);
  EXPECT_THROW(backend->forward(std::span(prompt).subspan(0, 4), logits), Error);  // 5 + 4 > 8
  EXPECT_EQ(backend->position(), 5);
  // Filling the cache exactly still works, and gives the same logits as one 8-token prefill.
  backend->forward(std::span(prompt).subspan(5, 3), logits);
  EXPECT_EQ(backend->position(), 8);
  auto fresh = cpu_backend(m, 256, 8);
  EXPECT_LE(relative_error(logits, run(*fresh, prompt)), kSamePathTolerance);
  const int32_t one = 0;
  EXPECT_THROW(backend->forward(std::span(&one, 1), logits), Error);
  EXPECT_EQ(backend->position(), 8);
}

TEST(CpuBackend, OutOfVocabularyIdsThrow) {
  const Model m = tied_gqa_model();
  auto backend = cpu_backend(m);
  std::vector<float> logits(static_cast<size_t>(m.config.vocab_size));
  for (int32_t bad : {-1, 97, 1000}) {
    const std::vector<int32_t> tokens = {3, bad, 5};
    EXPECT_THROW(backend->forward(tokens, logits), Error) << "id " << bad;
    EXPECT_EQ(backend->position(), 0) << "id " << bad;
  }
  const std::vector<int32_t> edge = {0, 96};  // the first and the last valid id
  EXPECT_NO_THROW(backend->forward(edge, logits));
  EXPECT_EQ(backend->position(), 2);
}

// on_progress comes after every progress_every decode steps, with the stats so far.
TEST(Generate, ReportsProgressEveryNSteps) {
  const Model m = tied_gqa_model();
  auto backend = cpu_backend(m, 256, 64);
  GenerateOptions options;
  options.max_new_tokens = 11;  // 10 decode steps after the prefill's token
  options.ignore_eos = true;
  options.progress_every = 3;
  std::vector<std::pair<size_t, int64_t>> calls;  // (steps timed, tokens generated) at each call
  options.on_progress = [&](const GenerateStats& s) { calls.emplace_back(s.step_seconds.size(), s.generated_tokens); };
  const GenerateStats stats = generate(*backend, *make_byte_tokenizer(256), test_prompt(12, m.config.vocab_size),
                                       options, [](std::string_view) {});
  EXPECT_EQ(stats.step_seconds.size(), 10u);
  const std::vector<std::pair<size_t, int64_t>> want = {{3, 3}, {6, 6}, {9, 9}};
  EXPECT_EQ(calls, want);
}

TEST(Generate, StopsWhenTheCacheIsFull) {
  const Model m = tied_gqa_model();
  auto backend = cpu_backend(m, 256, 15);
  const std::vector<int32_t> prompt = test_prompt(12, m.config.vocab_size);
  GenerateOptions options;
  options.max_new_tokens = 100;
  int64_t pieces = 0;
  const GenerateStats stats = generate(*backend, *make_byte_tokenizer(256), prompt, options,
                                       [&](std::string_view) { ++pieces; });
  // 12 prompt positions + 3 fed-back tokens fill the 15-position cache; the 4th token comes from the
  // last logits and is printed but never fed back.
  EXPECT_TRUE(stats.hit_context_limit);
  EXPECT_EQ(stats.generated_tokens, 4);
  EXPECT_EQ(pieces, 4);
  EXPECT_EQ(backend->position(), 15);
  EXPECT_THROW(generate(*backend, *make_byte_tokenizer(256), test_prompt(16, 97), options,
                        [](std::string_view) {}),
               Error);
}

// ------------------------------------------------------------------------------------------------
// Sampler.
// ------------------------------------------------------------------------------------------------

Sampler make_sampler(float temperature, uint64_t seed, float top_p = 1.0f) {
  return Sampler(SamplingParams{temperature, top_p, seed});
}

TEST(Sampler, TemperatureZeroIsArgmaxWithLowestIndexOnTies) {
  Sampler greedy = make_sampler(0.0f, 42);
  std::vector<float> logits = {0.5f, -1.0f, 3.0f, 2.9f, 3.0f};
  EXPECT_EQ(greedy.next(logits), 2);
  EXPECT_EQ(argmax(logits), 2);
  std::vector<float> negative = {-5.0f, -4.0f, -7.0f};
  EXPECT_EQ(greedy.next(negative), 1);
  std::vector<float> last = {0.0f, 0.0f, 1e-6f};
  EXPECT_EQ(greedy.next(last), 2);
  // NaN is never chosen, even first; all NaN gives 0.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> with_nan = {nan, 1.0f, nan, 4.0f, 4.0f, nan};
  EXPECT_EQ(greedy.next(with_nan), 3);
  EXPECT_EQ(argmax(std::vector<float>{nan, nan}), 0);
}

TEST(Sampler, RejectsBadParameters) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(make_sampler(-0.5f, 1), Error);
  EXPECT_THROW(make_sampler(nan, 1), Error);
  for (float top_p : {0.0f, -0.1f, 1.5f, nan}) EXPECT_THROW(make_sampler(1.0f, 1, top_p), Error) << top_p;
  EXPECT_NO_THROW(make_sampler(0.0f, 1, 1.0f));
  EXPECT_NO_THROW(make_sampler(0.7f, 1, 1e-6f));
}

std::vector<int32_t> draw(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(sampler.next(logits));
  return out;
}

std::vector<double> frequencies(const std::vector<int32_t>& tokens, size_t vocab) {
  std::vector<double> f(vocab, 0.0);
  for (int32_t t : tokens) f.at(static_cast<size_t>(t)) += 1.0 / static_cast<double>(tokens.size());
  return f;
}

TEST(Sampler, SeededSamplingIsDeterministic) {
  const std::vector<float> logits = {0.1f, 0.7f, -0.3f, 1.2f, 0.0f, 0.9f};
  for (float top_p : {1.0f, 0.8f}) {
    Sampler a = make_sampler(0.8f, 1234, top_p), b = make_sampler(0.8f, 1234, top_p), c = make_sampler(0.8f, 99, top_p);
    const auto da = draw(a, logits, 300), db = draw(b, logits, 300), dc = draw(c, logits, 300);
    EXPECT_EQ(da, db);
    EXPECT_NE(da, dc);
  }
}

// The k-th call draws u = sample_uniform(seed, k): with two equal logits the token is 0 iff u < 1/2
// (kept mass K = 2 · 2^40, r = floor(K u), and token 0's running mass 2^40 exceeds r iff u < 1/2).
TEST(Sampler, CallCountIsTheCounterOfTheDraw) {
  constexpr uint64_t kSeed = 77;
  Sampler sampler = make_sampler(1.0f, kSeed);
  const std::vector<float> logits = {0.25f, 0.25f};
  Sampler at = make_sampler(1.0f, kSeed);
  for (uint64_t k = 0; k < 200; ++k) {
    const int32_t expected = sample_uniform(kSeed, k) < 0.5f ? 0 : 1;
    ASSERT_EQ(at.next_at(logits, k), expected) << "step " << k;  // explicit step, counter untouched
    ASSERT_EQ(sampler.next(logits), expected) << "call " << k;
  }
  // next_at left its sampler's counter at 0.
  EXPECT_EQ(at.next(logits), sample_uniform(kSeed, 0) < 0.5f ? 0 : 1);
}

TEST(Sampler, FrequenciesFollowSoftmaxOfLogitsOverTemperature) {
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.4};
  constexpr int kDraws = 40000;
  for (float temperature : {1.0f, 2.0f}) {
    std::vector<float> logits;
    for (double v : p) logits.push_back(static_cast<float>(std::log(v) * temperature));  // softmax(l/T) = p
    logits.push_back(-std::numeric_limits<float>::infinity());                           // never drawn
    Sampler sampler = make_sampler(temperature, 2024);
    const std::vector<double> f = frequencies(draw(sampler, logits, kDraws), logits.size());
    for (size_t i = 0; i < p.size(); ++i) {
      // Standard deviation is at most sqrt(0.25 / 40000) = 0.0025; allow 4 of them.
      EXPECT_NEAR(f[i], p[i], 0.01) << "T=" << temperature << " i=" << i;
    }
    EXPECT_EQ(f.back(), 0.0) << "a -inf logit was sampled";
  }
  // A low temperature concentrates the mass on the largest logit.
  Sampler cold = make_sampler(0.01f, 5);
  for (int32_t t : draw(cold, {1.0f, 2.0f, 1.5f}, 200)) ASSERT_EQ(t, 1);
}

// Top-p keeps the most probable tokens until their mass reaches top_p, renormalised.
TEST(Sampler, TopPCutsTheTailAndRenormalises) {
  const std::vector<double> p = {0.1, 0.4, 0.2, 0.3};  // sorted: 0.4, 0.3 | 0.2, 0.1
  std::vector<float> logits;
  for (double v : p) logits.push_back(static_cast<float>(std::log(v)));
  constexpr int kDraws = 40000;
  // 0.4 < 0.65 <= 0.7: the nucleus is {1, 3}, drawn 4/7 and 3/7 of the time.
  Sampler sampler = make_sampler(1.0f, 11, 0.65f);
  const std::vector<double> f = frequencies(draw(sampler, logits, kDraws), logits.size());
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 4.0 / 7.0, 0.01);
  EXPECT_NEAR(f[3], 3.0 / 7.0, 0.01);
  // A tiny top_p keeps only the most probable token.
  Sampler narrow = make_sampler(1.0f, 12, 1e-4f);
  for (int32_t t : draw(narrow, logits, 500)) ASSERT_EQ(t, 1);
  // 0.7 < 0.85 <= 0.9 needs three tokens: {1, 3, 2} with 4/9, 3/9, 2/9.
  Sampler wide = make_sampler(1.0f, 13, 0.85f);
  const std::vector<double> g = frequencies(draw(wide, logits, kDraws), logits.size());
  EXPECT_EQ(g[0], 0.0);
  EXPECT_NEAR(g[1], 4.0 / 9.0, 0.01);
  EXPECT_NEAR(g[2], 2.0 / 9.0, 0.01);
  EXPECT_NEAR(g[3], 3.0 / 9.0, 0.01);
}

// Tokens tied with the threshold logit are all kept, even where fewer would reach top_p.
TEST(Sampler, TopPKeepsEveryTokenTiedAtTheThreshold) {
  // Weights 1, 1, 1, e^-1, e^-1: 0.3 of the mass is reached inside the tied top group.
  const std::vector<float> logits = {0.0f, 1.0f, 1.0f, 1.0f, 0.0f};
  constexpr int kDraws = 30000;
  Sampler sampler = make_sampler(1.0f, 21, 0.3f);
  const std::vector<double> f = frequencies(draw(sampler, logits, kDraws), logits.size());
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[4], 0.0);
  for (size_t i : {1u, 2u, 3u}) EXPECT_NEAR(f[i], 1.0 / 3.0, 0.012) << "i=" << i;
}

// Plain inverse-CDF sampling written independently (float weights, double sums, no fixed point): what
// top_p = 1 must equal.
int32_t plain_sample(const std::vector<float>& logits, float temperature, float u) {
  const float m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> w;
  double total = 0.0;
  for (float l : logits) {
    w.push_back(static_cast<float>(std::exp(static_cast<double>((l - m) / temperature))));
    total += w.back();
  }
  double running = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    running += w[i];
    if (running > static_cast<double>(u) * total) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(logits.size() - 1);
}

TEST(Sampler, TopPOneEqualsPlainSampling) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<float> logits(300);
  for (float& l : logits) l = dist(rng);
  constexpr uint64_t kSeed = 314;
  constexpr float kT = 0.9f;
  // Every token carries more than 1e-7 of the mass, so the largest top_p below 1 keeps them all and
  // runs the threshold search to the same kept set.
  Sampler one = make_sampler(kT, kSeed, 1.0f), almost = make_sampler(kT, kSeed, std::nextafter(1.0f, 0.0f));
  for (uint64_t k = 0; k < 2000; ++k) {
    const int32_t token = one.next(logits);
    // Fixed point against double sums can only differ when u lands within ~1e-12 of a CDF step.
    ASSERT_EQ(token, plain_sample(logits, kT, sample_uniform(kSeed, k))) << "call " << k;
    ASSERT_EQ(almost.next(logits), token) << "call " << k;
  }
}

}  // namespace
}  // namespace ra
