// `ra dump-qkv` (launcher/cli/dump_qkv_command.h), called as a library: the files and meta.json it writes,
// that they hold exactly what the CPU backend's q/k/v observer delivers, that they do not depend on the
// prefill chunk size, that keys are causal, and that attention recomputed from the dump with the shared
// partial-state math (DESIGN §4) is well defined with meta.json's scale and the GQA head mapping.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/npy.h"
#include "common/partial_state.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/synthetic_model.h"
#include "launcher/cli/dump_qkv_command.h"
#include "tests/support/error_message.h"
#include "tests/support/small_model.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_hf_model.h"

namespace ra {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// One layer of a dump, as read back: q (n_heads, T, head_dim), k and v (n_kv_heads, T, head_dim).
struct LayerQkv {
  NpyArray q, k, v;
};

struct Dump {
  nlohmann::json meta;
  std::vector<LayerQkv> layers;
};

Dump read_dump(const std::filesystem::path& dir) {
  Dump d;
  d.meta = test::read_json(dir / "meta.json");
  const int64_t n_layers = d.meta.at("n_layers").get<int64_t>();
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string s = "_l" + std::to_string(l) + ".npy";
    d.layers.push_back({read_npy_f32(dir / ("q" + s)), read_npy_f32(dir / ("k" + s)), read_npy_f32(dir / ("v" + s))});
  }
  return d;
}

SyntheticModelSpec small_spec() { return test::small_synthetic_spec(128, 512, 99); }

// BOS + the bytes of a synthetic prompt.
std::vector<int32_t> prompt_tokens(const Model& model, int64_t bytes) {
  std::vector<int32_t> t = {model.config.bos_token_id};
  for (unsigned char c : make_synthetic_prompt(bytes, 3)) t.push_back(c);
  return t;
}

// Largest |a - b| over the positions [0, upto) of each head of two (heads, T, head_dim) arrays whose T
// may differ.
float max_diff(const NpyArray& a, const NpyArray& b, int64_t upto) {
  const int64_t heads = a.shape[0], ta = a.shape[1], tb = b.shape[1], hd = a.shape[2];
  float m = 0.0f;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < upto * hd; ++i) {
      m = std::max(m, std::fabs(a.data[(h * ta) * hd + i] - b.data[(h * tb) * hd + i]));
    }
  }
  return m;
}

class DumpQkvTest : public ::testing::Test {
 protected:
  DumpQkvTest() : model_(make_synthetic_model(small_spec())), tokens_(prompt_tokens(model_, 200)) {}

  std::filesystem::path dump(const std::string& name, std::span<const int32_t> tokens, int64_t chunk) {
    const std::filesystem::path out = dir_.path() / name;
    DumpQkvOptions options;
    options.prefill_chunk = chunk;
    const DumpQkvStats stats = dump_qkv(model_, tokens, out, options);
    EXPECT_EQ(stats.tokens, static_cast<int64_t>(tokens.size()));
    EXPECT_EQ(stats.layers, model_.config.n_layers);
    return out;
  }

  test::TempDir dir_{"ra-dump-qkv-test"};
  Model model_;
  std::vector<int32_t> tokens_;  // T = 201, BOS included
};

TEST_F(DumpQkvTest, WritesEveryLayerWithTheAgreedShapesAndMeta) {
  const Dump d = read_dump(dump("a", tokens_, 16));
  const ModelConfig& c = model_.config;
  const int64_t T = static_cast<int64_t>(tokens_.size());
  EXPECT_EQ(d.meta.at("n_layers").get<int64_t>(), 2);
  EXPECT_EQ(d.meta.at("n_heads").get<int64_t>(), 4);
  EXPECT_EQ(d.meta.at("n_kv_heads").get<int64_t>(), 2);
  EXPECT_EQ(d.meta.at("head_dim").get<int64_t>(), 16);
  EXPECT_EQ(d.meta.at("tokens").get<int64_t>(), T);
  EXPECT_EQ(d.meta.at("scale").get<float>(), c.attn_scale());
  EXPECT_NEAR(d.meta.at("scale").get<double>(), 1.0 / std::sqrt(16.0), 1e-7);
  EXPECT_EQ(d.meta.at("model").get<std::string>(), model_.source);
  ASSERT_EQ(d.layers.size(), 2u);
  for (const LayerQkv& l : d.layers) {
    EXPECT_EQ(l.q.shape, (std::vector<int64_t>{4, T, 16}));
    EXPECT_EQ(l.k.shape, (std::vector<int64_t>{2, T, 16}));
    EXPECT_EQ(l.v.shape, (std::vector<int64_t>{2, T, 16}));
    for (const NpyArray* a : {&l.q, &l.k, &l.v}) {
      EXPECT_TRUE(std::all_of(a->data.begin(), a->data.end(), [](float x) { return std::isfinite(x); }));
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "a" / "q_l2.npy"));
}

// The dump is the observer's output rearranged from [token][head][dim] to (head, token, dim), bit for bit.
TEST_F(DumpQkvTest, EqualsWhatTheObserverDelivers) {
  const ModelConfig& c = model_.config;
  const int64_t T = static_cast<int64_t>(tokens_.size()), hd = c.head_dim;
  const Dump d = read_dump(dump("b", tokens_, 16));

  std::vector<std::vector<float>> q(c.n_layers, std::vector<float>(c.n_heads * T * hd, NAN));
  std::vector<std::vector<float>> k(c.n_layers, std::vector<float>(c.n_kv_heads * T * hd, NAN));
  std::vector<std::vector<float>> v = k;
  int64_t calls = 0;
  BackendOptions options;
  options.max_positions = T;
  options.prefill_chunk = 16;
  options.qkv_observer = [&](const QkvChunk& ch) {
    ++calls;
    for (int64_t i = 0; i < ch.n; ++i) {
      const int64_t t = ch.position + i;
      for (int64_t h = 0; h < c.n_heads; ++h) {
        std::copy_n(ch.q + i * c.q_dim() + h * hd, hd, q[ch.layer].data() + (h * T + t) * hd);
      }
      for (int64_t g = 0; g < c.n_kv_heads; ++g) {
        std::copy_n(ch.k + i * c.kv_dim() + g * hd, hd, k[ch.layer].data() + (g * T + t) * hd);
        std::copy_n(ch.v + i * c.kv_dim() + g * hd, hd, v[ch.layer].data() + (g * T + t) * hd);
      }
    }
  };
  const std::unique_ptr<Backend> backend = make_cpu_backend(model_, options);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  backend->forward(tokens_, logits);
  EXPECT_EQ(calls, c.n_layers * ((T + 15) / 16));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    EXPECT_EQ(d.layers[l].q.data, q[l]) << "layer " << l;
    EXPECT_EQ(d.layers[l].k.data, k[l]) << "layer " << l;
    EXPECT_EQ(d.layers[l].v.data, v[l]) << "layer " << l;
  }
}

TEST_F(DumpQkvTest, DoesNotDependOnThePrefillChunk) {
  const Dump ref = read_dump(dump("chunk256", tokens_, 256));  // one chunk
  const int64_t T = static_cast<int64_t>(tokens_.size());
  for (int64_t chunk : {1, 7, 64}) {
    const Dump d = read_dump(dump("chunk" + std::to_string(chunk), tokens_, chunk));
    for (size_t l = 0; l < ref.layers.size(); ++l) {
      EXPECT_LE(max_diff(d.layers[l].q, ref.layers[l].q, T), 1e-5f) << "chunk " << chunk << " layer " << l;
      EXPECT_LE(max_diff(d.layers[l].k, ref.layers[l].k, T), 1e-5f) << "chunk " << chunk << " layer " << l;
      EXPECT_LE(max_diff(d.layers[l].v, ref.layers[l].v, T), 1e-5f) << "chunk " << chunk << " layer " << l;
    }
  }
}

// Position t's q/k/v see only tokens [0, t]: dumping a prefix gives the same rows.
TEST_F(DumpQkvTest, RowsDoNotDependOnLaterTokens) {
  const int64_t prefix = 77;
  const Dump full = read_dump(dump("full", tokens_, 32));
  const Dump part = read_dump(dump("prefix", std::span<const int32_t>(tokens_).first(prefix), 32));
  EXPECT_EQ(part.meta.at("tokens").get<int64_t>(), prefix);
  for (size_t l = 0; l < full.layers.size(); ++l) {
    EXPECT_EQ(part.layers[l].k.shape[1], prefix);
    EXPECT_LE(max_diff(part.layers[l].q, full.layers[l].q, prefix), 1e-5f) << "layer " << l;
    EXPECT_LE(max_diff(part.layers[l].k, full.layers[l].k, prefix), 1e-5f) << "layer " << l;
    EXPECT_LE(max_diff(part.layers[l].v, full.layers[l].v, prefix), 1e-5f) << "layer " << l;
  }
  // And the later tokens do matter: a different token at `prefix` changes the following rows.
  std::vector<int32_t> other = tokens_;
  other[prefix] = other[prefix] == 'x' ? 'y' : 'x';
  const Dump changed = read_dump(dump("changed", other, 32));
  EXPECT_LE(max_diff(changed.layers[1].k, full.layers[1].k, prefix), 1e-5f);
  EXPECT_GT(max_diff(changed.layers[1].k, full.layers[1].k, prefix + 1), 1e-3f);
}

// Attention of the last position of layer 0 recomputed from the dump: query head h reads kv head
// h / (n_heads / n_kv_heads), scores are (q · k) · meta.scale, and ra::attend agrees with a double
// precision softmax over those scores.
TEST_F(DumpQkvTest, AttentionFromTheDumpUsesMetaScaleAndGqaMapping) {
  const Dump d = read_dump(dump("attn", tokens_, 64));
  const int64_t H = d.meta.at("n_heads"), G = d.meta.at("n_kv_heads"), hd = d.meta.at("head_dim");
  const int64_t T = d.meta.at("tokens");
  const float scale = d.meta.at("scale").get<float>();
  const LayerQkv& l0 = d.layers[0];
  const int64_t t = T - 1;
  std::vector<float> scratch(static_cast<size_t>(T)), o(static_cast<size_t>(hd));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / G);
    const float* q = l0.q.data.data() + (h * T + t) * hd;
    const float* keys = l0.k.data.data() + g * T * hd;
    const float* values = l0.v.data.data() + g * T * hd;
    const float lse = attend(q, keys, values, static_cast<size_t>(T), static_cast<size_t>(hd),
                             static_cast<size_t>(hd), scale, scratch, o.data());
    ASSERT_TRUE(std::isfinite(lse)) << "head " << h;
    for (float x : o) ASSERT_TRUE(std::isfinite(x)) << "head " << h;

    std::vector<double> s(static_cast<size_t>(T));
    double m = -INFINITY;
    for (int64_t j = 0; j < T; ++j) {
      double dot = 0.0;
      for (int64_t e = 0; e < hd; ++e) dot += static_cast<double>(q[e]) * keys[j * hd + e];
      s[j] = dot * scale;
      m = std::max(m, s[j]);
    }
    double sum = 0.0;
    for (double x : s) sum += std::exp(x - m);
    const double lse_ref = m + std::log(sum);
    EXPECT_NEAR(lse, lse_ref, 1e-4 * std::max(1.0, std::fabs(lse_ref))) << "head " << h;
    for (int64_t e = 0; e < hd; ++e) {
      double acc = 0.0;
      for (int64_t j = 0; j < T; ++j) acc += std::exp(s[j] - lse_ref) * values[j * hd + e];
      EXPECT_NEAR(o[e], acc, 1e-4) << "head " << h << " dim " << e;
    }
    // With another scale the log-sum-exp changes: the dump's scale is the one that matters.
    const float lse_unscaled = attend(q, keys, values, static_cast<size_t>(T), static_cast<size_t>(hd),
                                      static_cast<size_t>(hd), 1.0f, scratch, o.data());
    EXPECT_GT(std::fabs(lse_unscaled - lse), 1e-3f) << "head " << h;
  }
}

TEST_F(DumpQkvTest, RejectsTooLongAndEmptyPrompts) {
  const std::vector<int32_t> long_prompt(static_cast<size_t>(model_.config.max_position_embeddings) + 1, 'a');
  EXPECT_THAT(test::error_of([&] { dump("long", long_prompt, 256); }),
              AllOf(HasSubstr("513 tokens"), HasSubstr("allows at most 512")));
  EXPECT_THROW(dump("empty", std::vector<int32_t>{}, 256), Error);
}

// meta.json is removed before a dump starts and written last, so a failed dump leaves none behind.
TEST_F(DumpQkvTest, FailedDumpLeavesNoMeta) {
  const std::filesystem::path out = dump("again", tokens_, 64);
  ASSERT_TRUE(std::filesystem::exists(out / "meta.json"));
  std::vector<int32_t> bad = tokens_;
  bad[5] = static_cast<int32_t>(model_.config.vocab_size);  // outside the vocabulary
  DumpQkvOptions options;
  EXPECT_THROW(dump_qkv(model_, bad, out, options), Error);
  EXPECT_FALSE(std::filesystem::exists(out / "meta.json"));
}

// ------------------------------------------------------------------------------------------------
// The command path: a model on disk, a prompt file, the tokenizer, BOS and --max-tokens.
// ------------------------------------------------------------------------------------------------

class DumpQkvCommandTest : public ::testing::Test {
 protected:
  DumpQkvCommandTest() {
    spec_.max_position_embeddings = 256;
    std::filesystem::create_directories(dir_.path() / "model");
    test::write_tiny_hf_model(dir_.path() / "model", spec_);
    test::write_text(dir_.path() / "prompt.txt", make_synthetic_prompt(120, 5));
  }

  DumpQkvArgs args(const std::string& out) const {
    DumpQkvArgs a;
    a.model = (dir_.path() / "model").string();
    a.prompt_file = (dir_.path() / "prompt.txt").string();
    a.out = (dir_.path() / out).string();
    a.prefill_chunk = 32;
    return a;
  }

  test::TempDir dir_{"ra-dump-qkv-cmd-test"};
  test::TinyHfSpec spec_;
};

TEST_F(DumpQkvCommandTest, DumpsAHuggingFaceCheckpoint) {
  ASSERT_EQ(run_dump_qkv(args("hf")), 0);
  const Dump d = read_dump(dir_.path() / "hf");
  EXPECT_EQ(d.meta.at("tokens").get<int64_t>(), 121);  // BOS + 120 bytes
  EXPECT_EQ(d.meta.at("n_layers").get<int64_t>(), spec_.layers);
  EXPECT_EQ(d.meta.at("n_heads").get<int64_t>(), spec_.heads);
  EXPECT_EQ(d.meta.at("n_kv_heads").get<int64_t>(), spec_.kv_heads);
  EXPECT_EQ(d.meta.at("head_dim").get<int64_t>(), spec_.head_dim);
  EXPECT_NEAR(d.meta.at("scale").get<double>(), 1.0 / std::sqrt(static_cast<double>(spec_.head_dim)), 1e-7);
  EXPECT_EQ(d.layers[1].q.shape, (std::vector<int64_t>{spec_.heads, 121, spec_.head_dim}));
  EXPECT_EQ(d.layers[1].v.shape, (std::vector<int64_t>{spec_.kv_heads, 121, spec_.head_dim}));

  // --max-tokens keeps a prefix, BOS included, with the same rows.
  DumpQkvArgs a = args("hf50");
  a.max_tokens = 50;
  ASSERT_EQ(run_dump_qkv(a), 0);
  const Dump p = read_dump(dir_.path() / "hf50");
  EXPECT_EQ(p.meta.at("tokens").get<int64_t>(), 50);
  EXPECT_LE(max_diff(p.layers[1].k, d.layers[1].k, 50), 1e-5f);
}

TEST_F(DumpQkvCommandTest, ClearErrors) {
  test::write_text(dir_.path() / "long.txt", std::string(300, 'z'));
  DumpQkvArgs a = args("long");
  a.prompt_file = (dir_.path() / "long.txt").string();
  EXPECT_THAT(test::error_of([&] { run_dump_qkv(a); }),
              AllOf(HasSubstr("301 tokens"), HasSubstr("allows at most 256"), HasSubstr("--max-tokens")));
  a.max_tokens = 256;  // a prefix that fits is fine
  EXPECT_EQ(run_dump_qkv(a), 0);

  DumpQkvArgs no_prompt = args("np");
  no_prompt.prompt_file.clear();
  EXPECT_THAT(test::error_of([&] { run_dump_qkv(no_prompt); }), HasSubstr("--prompt-file is required"));

  DumpQkvArgs missing = args("missing");
  missing.prompt_file = (dir_.path() / "absent.txt").string();
  EXPECT_THAT(test::error_of([&] { run_dump_qkv(missing); }), HasSubstr("absent.txt"));
}

// With no --model the embedded demo model and its synthetic prompt are used, so a fresh machine works.
TEST_F(DumpQkvCommandTest, EmbeddedModelNeedsNoFiles) {
  DumpQkvArgs a;
  a.out = (dir_.path() / "demo").string();
  a.synthetic_prompt_bytes = 40;
  ASSERT_EQ(run_dump_qkv(a), 0);
  const Dump d = read_dump(dir_.path() / "demo");
  const SyntheticModelSpec demo;
  // BOS + the synthetic prompt (which never cuts its closing question, so may exceed 40 bytes).
  const auto T = static_cast<int64_t>(make_synthetic_prompt(40, 7).size()) + 1;
  EXPECT_EQ(d.meta.at("tokens").get<int64_t>(), T);
  EXPECT_EQ(d.meta.at("n_layers").get<int64_t>(), demo.n_layers);
  EXPECT_EQ(d.layers[0].q.shape, (std::vector<int64_t>{demo.n_heads, T, demo.head_dim}));
}

}  // namespace
}  // namespace ra
