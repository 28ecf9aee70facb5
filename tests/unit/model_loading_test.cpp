// Loading tiny checkpoints that the test writes itself: a GQA, sharded, BF16 Hugging Face model must
// load and decode, its dtypes and shardings must agree, and every corrupt input must fail with an
// ra::Error that names the file and the tensor or field at fault.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/decode/generator.h"
#include "gpu_worker/model/model_config.h"
#include "gpu_worker/model/model_loader.h"
#include "gpu_worker/model/tokenizer.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_hf_model.h"

namespace ra {
namespace {

namespace fs = std::filesystem;
using test::HfCheckpoint;
using test::RawTensor;
using test::TempDir;
using test::TinyHfSpec;
using ::testing::AllOf;
using ::testing::HasSubstr;

using test::error_of;

std::string load_error(const fs::path& path) {
  return error_of([&] { load_model(path); });
}

// A tiny checkpoint whose config.json `edit` changed, loaded: the error, which must name that
// config.json (checked here).
std::string edited_config_load_error(const std::function<void(nlohmann::json&)>& edit) {
  TempDir dir;
  test::write_tiny_hf_model(dir.path(), TinyHfSpec{});
  const fs::path config = dir.path() / "config.json";
  auto j = test::read_json(config);
  edit(j);
  test::write_json(config, j);
  const std::string error = load_error(dir.path());
  EXPECT_THAT(error, HasSubstr(config.string()));
  return error;
}

// Writes the one-file checkpoint `ck` to a fresh folder and loads it: the error, which must name that
// folder's model.safetensors (checked here).
std::string single_file_load_error(const HfCheckpoint& ck) {
  TempDir dir;
  test::write_hf_checkpoint(dir.path(), ck);
  const std::string error = load_error(dir.path());
  EXPECT_THAT(error, HasSubstr((dir.path() / "model.safetensors").string()));
  return error;
}

// The logits of the last prompt token: [vocab] float32.
std::vector<float> logits_of(const Model& model, const std::vector<int32_t>& prompt) {
  auto backend = make_cpu_backend(model, BackendOptions{});
  std::vector<float> logits(static_cast<size_t>(model.config.vocab_size));
  backend->forward(prompt, logits);
  return logits;
}

const std::vector<int32_t> kPrompt = {256, 'H', 'e', 'l', 'l', 'o', ',', ' ', 'w', 'o', 'r', 'l', 'd'};

TinyHfSpec sharded_spec() {
  TinyHfSpec spec;
  spec.shards = 2;
  return spec;
}

// The file name of the shard holding `name`.
std::string shard_of(const HfCheckpoint& ck, const std::string& name) {
  for (const auto& [file, tensors] : ck.shards) {
    for (const RawTensor& t : tensors) {
      if (t.name == name) return file;
    }
  }
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

// Where write_safetensors really puts `name`: [begin, end) in the data section.
std::pair<uint64_t, uint64_t> true_offsets(const std::vector<RawTensor>& tensors, const std::string& name) {
  uint64_t begin = 0;
  for (const RawTensor& t : tensors) {
    if (t.name == name) return {begin, begin + t.bytes.size()};
    begin += t.bytes.size();
  }
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

const test::FloatTensor& weight(const std::vector<test::FloatTensor>& weights, const std::string& name) {
  for (const auto& t : weights) {
    if (t.name == name) return t;
  }
  throw Error("no weight " + name);
}

// ---- The tiny model loads and decodes ----

TEST(TinyHfModel, ShardedGqaBf16LoadsWithItsConfigAndWeights) {
  TempDir dir;
  const TinyHfSpec spec = sharded_spec();
  test::write_tiny_hf_model(dir.path(), spec);
  ASSERT_TRUE(fs::exists(dir.path() / "model.safetensors.index.json"));

  const Model m = load_model(dir.path());
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.group_size(), 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.vocab_size, 258);
  EXPECT_EQ(c.max_position_embeddings, 256);
  EXPECT_EQ(c.bos_token_id, 256);
  EXPECT_EQ(c.eos_token_id, 257);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.rope_scaling.llama3);
  EXPECT_EQ(m.weight_dtype, "BF16");

  // The loader maps each HF name to the right slot (values are bf16-exact, so equality is exact).
  const auto weights = test::tiny_hf_weights(spec);
  EXPECT_EQ(m.weights.embed, weight(weights, "model.embed_tokens.weight").values);
  EXPECT_EQ(m.weights.layers[1].wk, weight(weights, "model.layers.1.self_attn.k_proj.weight").values);
  EXPECT_EQ(m.weights.layers[0].w_down, weight(weights, "model.layers.0.mlp.down_proj.weight").values);
  EXPECT_EQ(m.weights.final_norm, weight(weights, "model.norm.weight").values);
  EXPECT_EQ(m.weights.lm_head, weight(weights, "lm_head.weight").values);
}

TEST(TinyHfModel, TiedEmbeddingsNeedNoLmHead) {
  TempDir dir;
  TinyHfSpec spec;
  spec.tie_word_embeddings = true;
  test::write_tiny_hf_model(dir.path(), spec);
  const Model m = load_model(dir.path());
  EXPECT_TRUE(m.config.tie_word_embeddings);
  EXPECT_TRUE(m.weights.lm_head.empty());
  EXPECT_EQ(&m.weights.output_matrix(), &m.weights.embed);
}

TEST(TinyHfModel, DecodesWithTheAutoPickedByteTokenizer) {
  TempDir dir;
  test::write_tiny_hf_model(dir.path(), sharded_spec());
  const Model m = load_model(dir.path());

  const std::vector<float> logits = logits_of(m, kPrompt);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  // Random weights still give logits that differ from token to token.
  EXPECT_NE(*std::max_element(logits.begin(), logits.end()), *std::min_element(logits.begin(), logits.end()));

  // vocab 258 and no tokenizer file: resolve_tokenizer must choose bytes on its own.
  const auto tokenizer = resolve_tokenizer("", dir.path(), m.config);
  EXPECT_EQ(tokenizer->name(), "bytes");
  std::vector<int32_t> prompt = {m.config.bos_token_id};
  for (int32_t id : tokenizer->encode("Hello")) prompt.push_back(id);

  auto backend = make_cpu_backend(m, BackendOptions{});
  GenerateOptions options;
  options.max_new_tokens = 8;
  int pieces = 0;
  const GenerateStats stats = generate(*backend, *tokenizer, prompt, options, [&](std::string_view) { ++pieces; });
  EXPECT_EQ(stats.prompt_tokens, 6);
  EXPECT_GT(stats.generated_tokens, 0);
  EXPECT_GE(pieces, stats.generated_tokens);  // one call per token, and one more for held-back bytes
  EXPECT_LE(pieces, stats.generated_tokens + 1);
  EXPECT_EQ(backend->position(), stats.prompt_tokens + stats.generated_tokens - (stats.stopped_at_eos ? 0 : 1));
}

TEST(TinyHfModel, F32F16AndBf16FilesGiveTheSameLogits) {
  // The weights are bf16-representable, so all three files hold the same numbers: BF16 and F32 must
  // decode to identical weights, and F16 differs only where a value falls into f16's subnormal range.
  std::vector<float> logits[3];
  std::vector<float> embed[3];
  const char* dtypes[3] = {"F32", "F16", "BF16"};
  for (int i = 0; i < 3; ++i) {
    TempDir dir;
    TinyHfSpec spec;
    spec.dtype = dtypes[i];
    test::write_tiny_hf_model(dir.path(), spec);
    const Model m = load_model(dir.path());
    EXPECT_EQ(m.weight_dtype, dtypes[i]);
    logits[i] = logits_of(m, kPrompt);
    embed[i] = m.weights.embed;
  }
  EXPECT_EQ(embed[2], embed[0]) << "BF16 and F32 files must decode to the same float32 weights";

  float scale = 0.0f;
  for (float x : logits[0]) scale = std::max(scale, std::abs(x));
  ASSERT_GT(scale, 0.0f);
  // A few units of each format's rounding step (2^-11 for f16, 2^-8 for bf16), relative to the logits.
  const float tol[3] = {0.0f, 4 * 0x1p-11f * scale, 4 * 0x1p-8f * scale};
  for (int i = 1; i < 3; ++i) {
    for (size_t v = 0; v < logits[0].size(); ++v) {
      ASSERT_NEAR(logits[i][v], logits[0][v], tol[i]) << dtypes[i] << " vs F32 at token " << v;
    }
  }
}

TEST(TinyHfModel, OneShardAndTwoShardsGiveBitIdenticalLogits) {
  TempDir one, two;
  TinyHfSpec spec;
  test::write_tiny_hf_model(one.path(), spec);
  spec.shards = 2;
  test::write_tiny_hf_model(two.path(), spec);
  ASSERT_TRUE(fs::exists(one.path() / "model.safetensors"));
  ASSERT_FALSE(fs::exists(two.path() / "model.safetensors"));

  const std::vector<float> a = logits_of(load_model(one.path()), kPrompt);
  const std::vector<float> b = logits_of(load_model(two.path()), kPrompt);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

// ---- Corrupt safetensors checkpoints ----

constexpr const char* kUpProj = "model.layers.1.mlp.up_proj.weight";

TEST(HfCorruption, TensorMissingFromShardAndIndex) {
  TempDir dir;
  HfCheckpoint ck = test::make_tiny_hf(sharded_spec());
  const std::string shard = shard_of(ck, kUpProj);
  test::erase_tensor(ck, kUpProj);
  test::write_hf_checkpoint(dir.path(), ck);
  EXPECT_THAT(load_error(dir.path()),
              AllOf(HasSubstr(std::string("missing tensor '") + kUpProj + "'"), HasSubstr(shard)));
}

TEST(HfCorruption, TensorMissingFromSingleFile) {
  HfCheckpoint ck = test::make_tiny_hf(TinyHfSpec{});
  test::erase_tensor(ck, "model.norm.weight");
  EXPECT_THAT(single_file_load_error(ck), HasSubstr("missing tensor 'model.norm.weight'"));
}

TEST(HfCorruption, TensorListedInIndexButAbsentFromShard) {
  TempDir dir;
  HfCheckpoint ck = test::make_tiny_hf(sharded_spec());
  test::write_hf_checkpoint(dir.path(), ck);
  // Rewrite the shard without the tensor; the index still lists it.
  const std::string shard = shard_of(ck, kUpProj);
  test::erase_tensor(ck, kUpProj);
  for (const auto& [file, tensors] : ck.shards) {
    if (file == shard) test::write_safetensors(dir.path() / file, tensors);
  }
  EXPECT_THAT(load_error(dir.path()),
              AllOf(HasSubstr((dir.path() / shard).string()), HasSubstr(std::string("missing tensor '") + kUpProj),
                    HasSubstr("model.safetensors.index.json")));
}

TEST(HfCorruption, ShardFileNamedInIndexDoesNotExist) {
  TempDir dir;
  const HfCheckpoint ck = test::make_tiny_hf(sharded_spec());
  test::write_hf_checkpoint(dir.path(), ck);
  const std::string shard = ck.shards[1].first;
  fs::remove(dir.path() / shard);
  EXPECT_THAT(load_error(dir.path()),
              AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr((dir.path() / shard).string()),
                    HasSubstr("does not exist")));
}

TEST(HfCorruption, WrongShapeNamesTensorAndBothShapes) {
  HfCheckpoint ck = test::make_tiny_hf(TinyHfSpec{});
  // Same bytes, transposed-looking shape: only the shape check can catch it.
  test::find_tensor(ck, "model.layers.0.self_attn.q_proj.weight").shape = {32, 128};
  EXPECT_THAT(single_file_load_error(ck), AllOf(HasSubstr("'model.layers.0.self_attn.q_proj.weight'"),
                                                HasSubstr("[32, 128]"), HasSubstr("[64, 64]")));
}

TEST(HfCorruption, UnsupportedDtypeNamesTensorAndDtype) {
  const TinyHfSpec spec;
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  const auto weights = test::tiny_hf_weights(spec);
  const auto& values = weight(weights, name);
  for (const std::string dtype : {"F64", "I8"}) {
    SCOPED_TRACE(dtype);
    HfCheckpoint ck = test::make_tiny_hf(spec);
    RawTensor& t = test::find_tensor(ck, name);
    if (dtype == "F64") {
      t = test::encode_tensor(values, "F64");
    } else {
      t.dtype = "I8";
      t.bytes.assign(values.values.size(), std::byte{1});
    }
    EXPECT_THAT(single_file_load_error(ck),
                AllOf(HasSubstr("'" + name + "'"), HasSubstr("unsupported dtype " + dtype)));
  }
}

TEST(HfCorruption, TruncatedShardNamesFileAndLastTensor) {
  TempDir dir;
  const HfCheckpoint ck = test::make_tiny_hf(sharded_spec());
  test::write_hf_checkpoint(dir.path(), ck);
  const fs::path shard = dir.path() / ck.shards[1].first;
  fs::resize_file(shard, fs::file_size(shard) - 10);
  // Only the tensor stored last in the shard runs past the cut.
  const std::string last = ck.shards[1].second.back().name;
  EXPECT_THAT(load_error(dir.path()),
              AllOf(HasSubstr(shard.string()), HasSubstr("'" + last + "'"), HasSubstr("truncated")));

  fs::resize_file(shard, 20);  // now the cut is inside the JSON header
  EXPECT_THAT(load_error(dir.path()),
              AllOf(HasSubstr(shard.string()), HasSubstr("truncated safetensors file")));
}

TEST(HfCorruption, DataOffsetsPastTheEndOfTheFile) {
  HfCheckpoint ck = test::make_tiny_hf(TinyHfSpec{});
  auto& tensors = ck.shards[0].second;
  uint64_t total = 0;
  for (const RawTensor& t : tensors) total += t.bytes.size();
  RawTensor& norm = test::find_tensor(ck, "model.norm.weight");
  norm.offsets = std::pair{total, total + norm.bytes.size()};  // right size, wrong place
  EXPECT_THAT(single_file_load_error(ck), AllOf(HasSubstr("'model.norm.weight'"), HasSubstr("past the end")));
}

TEST(HfCorruption, DataOffsetsWhoseSizeDoesNotMatchDtypeAndShape) {
  HfCheckpoint ck = test::make_tiny_hf(TinyHfSpec{});
  const auto [begin, end] = true_offsets(ck.shards[0].second, "model.norm.weight");
  test::find_tensor(ck, "model.norm.weight").offsets = std::pair{begin, end - 2};
  EXPECT_THAT(single_file_load_error(ck),
              AllOf(HasSubstr("'model.norm.weight'"), HasSubstr("hold 126 bytes but BF16 [64] needs 128")));
}

TEST(HfCorruption, OverlappingDataOffsetsNameBothTensors) {
  HfCheckpoint ck = test::make_tiny_hf(TinyHfSpec{});
  const std::string a = "model.layers.0.input_layernorm.weight";
  const std::string b = "model.layers.0.post_attention_layernorm.weight";
  const auto [begin, end] = true_offsets(ck.shards[0].second, a);
  test::find_tensor(ck, b).offsets = std::pair{begin + 64, end + 64};  // same size, half on top of a
  EXPECT_THAT(single_file_load_error(ck),
              AllOf(HasSubstr("'" + a + "'"), HasSubstr("'" + b + "'"), HasSubstr("overlap")));
}

TEST(HfCorruption, InvalidJsonInConfigIndexAndHeader) {
  TempDir dir;
  test::write_tiny_hf_model(dir.path(), sharded_spec());
  const fs::path config = dir.path() / "config.json";
  const fs::path index = dir.path() / "model.safetensors.index.json";

  test::write_text(config, R"({"hidden_size": 64,)");
  EXPECT_THAT(load_error(dir.path()), AllOf(HasSubstr(config.string()), HasSubstr("invalid JSON")));

  test::write_tiny_hf_model(dir.path(), sharded_spec());
  test::write_text(index, R"({"weight_map": {"model.norm.weight": )");
  EXPECT_THAT(load_error(dir.path()), AllOf(HasSubstr(index.string()), HasSubstr("invalid JSON")));

  test::write_text(index, R"({"metadata": {}})");  // valid JSON, but no weight_map
  EXPECT_THAT(load_error(dir.path()), AllOf(HasSubstr(index.string()), HasSubstr("'weight_map'")));

  TempDir single;
  test::write_tiny_hf_model(single.path(), TinyHfSpec{});
  const fs::path file = single.path() / "model.safetensors";
  test::write_safetensors_raw(file, R"({"model.norm.weight": {"dtype": "BF16", )", {});
  EXPECT_THAT(load_error(single.path()),
              AllOf(HasSubstr(file.string()), HasSubstr("invalid JSON in the safetensors header")));

  // A number too large for a double is JSON the parser refuses with out_of_range, not parse_error
  // (found by tests/fuzz/safetensors_fuzz: it escaped as an uncaught exception).
  test::write_safetensors_raw(file, R"({"x": 1e99999})", {});
  EXPECT_THAT(load_error(single.path()),
              AllOf(HasSubstr(file.string()), HasSubstr("invalid JSON in the safetensors header")));
  test::write_tiny_hf_model(dir.path(), sharded_spec());
  test::write_text(config, R"({"hidden_size": 1e99999})");
  EXPECT_THAT(load_error(dir.path()), AllOf(HasSubstr(config.string()), HasSubstr("invalid JSON")));
}

// transformers >= 5 saves RoPE settings as one 'rope_parameters' object instead of top-level
// 'rope_theta' and 'rope_scaling'; both spellings load to the same config.
TEST(TinyHfModel, RopeParametersOfTransformers5AreRead) {
  TempDir dir;
  test::write_tiny_hf_model(dir.path(), TinyHfSpec{});
  const fs::path config = dir.path() / "config.json";
  auto j = test::read_json(config);
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 64}};
  test::write_json(config, j);
  const ModelConfig c = load_model(dir.path()).config;
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_TRUE(c.rope_scaling.llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 64);

  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}};
  test::write_json(config, j);
  const ModelConfig d = load_model(dir.path()).config;
  EXPECT_FLOAT_EQ(d.rope_theta, 250000.0f);
  EXPECT_FALSE(d.rope_scaling.llama3);

  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 250000.0}};
  test::write_json(config, j);
  EXPECT_THAT(load_error(dir.path()), HasSubstr("'yarn' is not supported"));
}

TEST(HfCorruption, GqaHeadCountsThatDoNotDivide) {
  EXPECT_THAT(edited_config_load_error([](nlohmann::json& j) { j["num_key_value_heads"] = 3; }),
              AllOf(HasSubstr("num_attention_heads (4)"), HasSubstr("num_key_value_heads (3)")));
}

TEST(HfCorruption, MissingRequiredConfigField) {
  EXPECT_THAT(edited_config_load_error([](nlohmann::json& j) { j.erase("hidden_size"); }),
              HasSubstr("missing required field 'hidden_size'"));
}

TEST(HfCorruption, MissingConfigOrWeights) {
  TempDir no_config;
  test::write_tiny_hf_model(no_config.path(), TinyHfSpec{});
  fs::remove(no_config.path() / "config.json");
  EXPECT_THAT(load_error(no_config.path()),
              AllOf(HasSubstr(no_config.path().string()), HasSubstr("no config.json")));

  TempDir no_weights;
  test::write_json(no_weights.path() / "config.json", test::tiny_hf_config(TinyHfSpec{}));
  EXPECT_THAT(load_error(no_weights.path()),
              AllOf(HasSubstr(no_weights.path().string()), HasSubstr("no weights found"),
                    HasSubstr("model.safetensors.index.json")));

  EXPECT_THAT(load_error(no_weights.path() / "nothing-here"),
              AllOf(HasSubstr("nothing-here"), HasSubstr("no such file or directory")));
}

// ---- Decoding limits and tokenizer lookup ----

TEST(Generate, PromptLongerThanTheContextIsRejected) {
  TempDir dir;
  test::write_tiny_hf_model(dir.path(), TinyHfSpec{});
  const Model m = load_model(dir.path());
  auto backend = make_cpu_backend(m, BackendOptions{});
  ASSERT_EQ(backend->max_positions(), 256);
  const auto tokenizer = make_byte_tokenizer(m.config.vocab_size);
  const std::vector<int32_t> prompt(257, 'a');
  const std::string message = error_of([&] {
    generate(*backend, *tokenizer, prompt, GenerateOptions{}, [](std::string_view) {});
  });
  EXPECT_THAT(message, AllOf(HasSubstr("257 tokens"), HasSubstr("at most 256")));
}

TEST(Tokenizer, NotFoundListsTheFilesLookedFor) {
  TempDir dir;
  TinyHfSpec spec;
  spec.vocab = 300;  // not the byte vocabulary, so bytes cannot be the fallback
  test::write_json(dir.path() / "config.json", test::tiny_hf_config(spec));
  const ModelConfig config = parse_hf_config(dir.path() / "config.json");
  const std::string message = error_of([&] { resolve_tokenizer("", dir.path(), config); });
  EXPECT_THAT(message, AllOf(HasSubstr((dir.path() / "tokenizer.bin").string()),
                             HasSubstr((dir.path() / "tok300.bin").string()), HasSubstr("has 300")));
}

// ---- llama2.c legacy .bin files ----

// The seven int32 header fields of a legacy llama2.c checkpoint (vocab_size < 0: separate classifier).
struct Llama2cHeader {
  int32_t dim = 16, hidden_dim = 32, n_layers = 2, n_heads = 2, n_kv_heads = 2, vocab_size = 32, seq_len = 8;
};

// Writes a valid legacy llama2.c checkpoint in llama2c_loader.cpp's order; returns the floats written.
std::vector<float> write_llama2c(const fs::path& file, const Llama2cHeader& h) {
  const int64_t D = h.dim, F = h.hidden_dim, L = h.n_layers, V = std::abs(h.vocab_size);
  const int64_t head_dim = D / h.n_heads, kvd = h.n_kv_heads * head_dim;
  // embed, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real, freq_cis_imag, [wcls]
  const int64_t count = V * D + L * D + L * D * D + 2 * L * D * kvd + L * D * D + L * D + 3 * L * F * D + D +
                  2 * (h.seq_len * head_dim / 2) + (h.vocab_size < 0 ? V * D : 0);
  std::vector<float> values(static_cast<size_t>(count));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 17) / 17.0f - 0.5f;
  std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
  bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  test::write_text(file, bytes);
  return values;
}

TEST(Llama2c, TinyLegacyFileLoads) {
  TempDir dir;
  const fs::path file = dir.path() / "tiny.bin";
  const Llama2cHeader h;
  const std::vector<float> values = write_llama2c(file, h);
  const Model m = load_model(file);
  EXPECT_EQ(m.config.hidden_size, 16);
  EXPECT_EQ(m.config.n_layers, 2);
  EXPECT_EQ(m.config.vocab_size, 32);
  EXPECT_EQ(m.config.max_position_embeddings, 8);
  EXPECT_TRUE(m.config.tie_word_embeddings);
  EXPECT_EQ(m.weights.embed, std::vector<float>(values.begin(), values.begin() + 32 * 16));
  // The final norm sits just before the two RoPE tables at the end of the file.
  const size_t rope = 2 * 8 * 8 / 2;
  EXPECT_EQ(m.weights.final_norm, std::vector<float>(values.end() - rope - 16, values.end() - rope));
}

TEST(Llama2c, TruncatedFileNamesSizes) {
  TempDir dir;
  const fs::path file = dir.path() / "tiny.bin";
  write_llama2c(file, Llama2cHeader{});
  const auto size = fs::file_size(file);
  fs::resize_file(file, size - 4);
  EXPECT_THAT(load_error(file), AllOf(HasSubstr(file.string()), HasSubstr("truncated"),
                                      HasSubstr("implies " + std::to_string(size) + " bytes"),
                                      HasSubstr("has " + std::to_string(size - 4))));

  fs::resize_file(file, 12);  // not even a whole header
  EXPECT_THAT(load_error(file), AllOf(HasSubstr(file.string()), HasSubstr("truncated llama2.c checkpoint")));
}

TEST(Llama2c, BadHeaderNamesTheField) {
  TempDir dir;
  const fs::path file = dir.path() / "bad.bin";
  // A valid file whose header is then overwritten in place, so only the header is wrong.
  auto write_with_header = [&](const Llama2cHeader& h) {
    write_llama2c(file, Llama2cHeader{});
    std::fstream out(file, std::ios::binary | std::ios::in | std::ios::out);
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
  };
  Llama2cHeader h;
  h.n_heads = 0;
  write_with_header(h);
  EXPECT_THAT(load_error(file), AllOf(HasSubstr(file.string()), HasSubstr("'n_heads' is 0")));

  h = Llama2cHeader{};
  h.n_heads = 3;  // dim 16 is not a multiple of 3
  write_with_header(h);
  EXPECT_THAT(load_error(file), AllOf(HasSubstr(file.string()), HasSubstr("dim (16)"), HasSubstr("n_heads (3)")));
}

}  // namespace
}  // namespace ra
