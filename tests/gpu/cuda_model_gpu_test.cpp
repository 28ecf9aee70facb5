// The CUDA backend on the real models of ../shared/models (labels gpu and model; each test skips when
// its model or the GPU is absent):
//   - stories260K (F32, llama2.c): 200 greedy tokens from BOS print exactly llama2.c's golden output;
//   - needle-byte-13m (bf16 HF checkpoint): logits against the CPU reference on a 4K-token needle prompt,
//     prefill and decode, and full attention on the GPU answers 4K needle prompts as on the CPU.

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gpu_worker/decode/generator.h"
#include "gpu_worker/decode/sampler.h"
#include "gpu_worker/model/model_loader.h"
#include "launcher/needle_task.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = RA_SHARED_MODELS_DIR;
const fs::path kHaystack = "/usr/include";

TEST(CudaModel, Stories260KGreedyOutputIsLlama2cGolden) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = kModels / "stories260K";
  if (!fs::exists(dir / "stories260K.bin")) GTEST_SKIP() << "stories260K not found at " << dir;
  const Model model = load_model(dir / "stories260K.bin");
  ASSERT_EQ(model.weight_dtype, "F32");
  const auto tokenizer = resolve_tokenizer((dir / "tok512.bin").string(), dir / "stories260K.bin", model.config);
  const auto backend = make_backend(BackendKind::kCuda, model, {});
  std::string text;
  const std::vector<int32_t> prompt = {model.config.bos_token_id};
  generate(*backend, *tokenizer, prompt, {.max_new_tokens = 200, .temperature = 0.0f},
           [&](std::string_view piece) { text += piece; });
  std::ifstream in(dir / "expected_stdout.txt", std::ios::binary);
  const std::string expected{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(text, expected);
}

class NeedleModelGpu : public testing::Test {
 protected:
  void SetUp() override {
    if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
    if (!fs::exists(kModels / "needle-byte-13m" / "config.json")) {
      GTEST_SKIP() << "needle-byte-13m not found at " << kModels;
    }
    if (!fs::is_directory(kHaystack)) GTEST_SKIP() << "no C headers at " << kHaystack << " for the haystack";
    model_ = load_model(kModels / "needle-byte-13m");
    tokenizer_ = make_byte_tokenizer(model_.config.vocab_size);
  }

  std::vector<int32_t> prompt(uint64_t seed, NeedlePrompt* out = nullptr) const {
    const NeedlePrompt p = make_needle_prompt(4096, 4, seed, kHaystack);
    std::vector<int32_t> ids = {model_.config.bos_token_id};
    const std::vector<int32_t> body = tokenizer_->encode(p.text);
    ids.insert(ids.end(), body.begin(), body.end());
    if (out) *out = p;
    return ids;
  }

  Model model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(NeedleModelGpu, LogitsMatchTheCpuReference) {
  const std::vector<int32_t> ids = prompt(1);
  BackendOptions o;
  o.max_positions = static_cast<int64_t>(ids.size()) + 32;
  const auto cpu = make_backend(BackendKind::kCpu, model_, o);
  const auto gpu = make_backend(BackendKind::kCuda, model_, o);
  std::vector<float> lc(static_cast<size_t>(model_.config.vocab_size)), lg(lc.size());
  cpu->forward(ids, lc);
  gpu->forward(ids, lg);
  EXPECT_OP("needle_prefill", "n=4096", "bf16", lg, lc, 1e-3);
  EXPECT_EQ(argmax(lg), argmax(lc));
  int agree = 0;
  for (int step = 0; step < 32; ++step) {  // greedy continuation of the CPU's choice
    const int32_t t[1] = {argmax(lc)};
    cpu->forward(t, lc);
    gpu->forward(t, lg);
    EXPECT_OP("needle_decode", "pos=" + std::to_string(ids.size() + step), "bf16", lg, lc, 1e-3);
    agree += argmax(lg) == argmax(lc) ? 1 : 0;
  }
  EXPECT_GE(agree, 31) << "argmax agreement over 32 decode steps";
}

TEST_F(NeedleModelGpu, FullAttentionAnswersFourOfFiveAt4K) {
  BackendOptions o;
  o.max_positions = 4096 + 16;
  const auto gpu = make_backend(BackendKind::kCuda, model_, o);
  int correct = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    NeedlePrompt p;
    const std::vector<int32_t> ids = prompt(seed, &p);
    std::string text;
    GenerateOptions gen;
    gen.max_new_tokens = 8;
    generate(*gpu, *tokenizer_, ids, gen, [&](std::string_view piece) { text += piece; });
    const bool ok = needle_answer_correct(text, p.answer);
    correct += ok ? 1 : 0;
    std::printf("seed %llu: expected %s, got \"%s\" -> %s\n", static_cast<unsigned long long>(seed), p.answer.c_str(),
                text.c_str(), ok ? "correct" : "WRONG");
  }
  EXPECT_GE(correct, 4);
}

}  // namespace
}  // namespace ra
