// stories260K (llama2.c legacy format): greedy decoding from BOS reproduces llama2.c's golden output.

#include <gtest/gtest.h>

#include <filesystem>

#include "gpu_worker/decode/generator.h"
#include "gpu_worker/decode/sampler.h"
#include "gpu_worker/model/model_loader.h"
#include "tests/support/read_file.h"

namespace ra {
namespace {

const std::filesystem::path kDir = std::filesystem::path(RA_SHARED_MODELS_DIR) / "stories260K";

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDir / "stories260K.bin") || !std::filesystem::exists(kDir / "tok512.bin")) {
      GTEST_SKIP() << "stories260K not found at " << kDir << " (the shared models folder is absent)";
    }
  }
};

TEST_F(Stories260K, FirstTwentyGreedyTokensMatchLlama2c) {
  const Model model = load_model(kDir / "stories260K.bin");
  const auto backend = make_cpu_backend(model, {});
  std::vector<float> logits(model.config.vocab_size);
  std::vector<int32_t> tokens = {model.config.bos_token_id};
  backend->forward(tokens, logits);
  while (tokens.size() < 20) {
    tokens.push_back(argmax(logits));
    backend->forward(std::span<const int32_t>(&tokens.back(), 1), logits);
  }
  const std::vector<int32_t> expected = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376,
                                         298, 315, 421, 395, 317, 426, 338, 401, 396, 267};
  EXPECT_EQ(tokens, expected);
}

TEST_F(Stories260K, TwoHundredGreedyTokensPrintExpectedStdout) {
  const Model model = load_model(kDir / "stories260K.bin");
  const auto tokenizer = resolve_tokenizer((kDir / "tok512.bin").string(), kDir / "stories260K.bin", model.config);
  const auto backend = make_cpu_backend(model, {});
  std::string text;
  const std::vector<int32_t> prompt = {model.config.bos_token_id};
  generate(*backend, *tokenizer, prompt, {.max_new_tokens = 200, .temperature = 0.0f},
           [&](std::string_view piece) { text += piece; });
  EXPECT_EQ(text, test::read_file(kDir / "expected_stdout.txt"));
}

}  // namespace
}  // namespace ra
