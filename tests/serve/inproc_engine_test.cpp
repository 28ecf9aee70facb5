// The in-process engine over the CPU backend: a prebuilt context's KV is reused only while the cache
// still holds it, and gives the tokens a cold prefill gives; generation matches `ra generate`'s decode
// loop; cancellation, stop tokens and refusals; an engine whose backend fails reports it. And the
// Backend::truncate extension it relies on.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/decode/generator.h"
#include "gpu_worker/model/synthetic_model.h"
#include "gpu_worker/model/tokenizer.h"
#include "gpu_worker/serve/inproc_engine.h"
#include "tests/support/small_model.h"

namespace ra::serve {
namespace {

using ::testing::HasSubstr;
using Tokens = std::vector<int32_t>;

SyntheticModelSpec small_spec() { return test::small_synthetic_spec(128, 2048, 77); }

std::unique_ptr<InprocEngine> make_engine(const std::string& mode = "full", int64_t prefill_piece = 256) {
  auto model = std::make_unique<Model>(make_synthetic_model(small_spec()));
  BackendOptions options;
  options.threads = 1;
  options.static_set = {mode == "window", 16, 64, nullptr};
  auto backend = make_cpu_backend(*model, options);
  InprocEngineOptions engine_options;
  engine_options.mode = mode;
  engine_options.prefill_piece = prefill_piece;
  return std::make_unique<InprocEngine>(std::move(model), std::move(backend), engine_options);
}

// BOS + the bytes of `text`.
Tokens bytes(const std::string& text) {
  Tokens t = {256};
  for (unsigned char c : text) t.push_back(c);
  return t;
}

const Tokens kStops = {256, 257};

struct Collect final : TokenSink {
  Tokens tokens;
  std::atomic<bool>* cancel_after = nullptr;  // set after cancel_at tokens
  size_t cancel_at = 0;
  bool on_token(int32_t token, const StepStats&) override {
    tokens.push_back(token);
    if (cancel_after && tokens.size() == cancel_at) cancel_after->store(true);
    return true;
  }
};

struct Generated {
  Tokens tokens;
  GenerationStats stats;
};

Generated generate(Engine& e, const Tokens& prompt, int64_t reusable, int64_t max_tokens, float temperature = 0.0f) {
  GenerationRequest r;
  r.prompt = prompt;
  r.reusable_prefix = reusable;
  r.sampling = {temperature, 1.0f, 42};
  r.max_tokens = max_tokens;
  r.stop_tokens = kStops;
  Collect sink;
  Generated out;
  out.stats = e.generate(r, sink);
  out.tokens = sink.tokens;
  return out;
}

std::string document() {
  std::string doc;
  for (int i = 0; doc.size() < 700; ++i) doc += "Line " + std::to_string(i) + " of the document; ";
  return doc;
}

TEST(InprocEngine, AReusedContextGivesTheTokensOfAColdPrefillAndSkipsItsPrefill) {
  for (const float temperature : {0.0f, 0.8f}) {
    const Tokens doc = bytes(document());
    Tokens prompt = doc;
    for (unsigned char c : std::string(" What is on line 3?")) prompt.push_back(c);

    auto cold_engine = make_engine();
    const Generated cold = generate(*cold_engine, prompt, 0, 24, temperature);
    EXPECT_EQ(cold.stats.reused_tokens, 0);
    ASSERT_EQ(cold.tokens.size(), 24u);

    auto engine = make_engine();
    const Generated built = generate(*engine, doc, 0, 0);  // the context: prefill only
    EXPECT_EQ(built.stats.generated_tokens, 0);
    EXPECT_EQ(built.stats.prompt_tokens, static_cast<int64_t>(doc.size()));
    const Generated warm = generate(*engine, prompt, static_cast<int64_t>(doc.size()), 24, temperature);
    EXPECT_EQ(warm.stats.reused_tokens, static_cast<int64_t>(doc.size()));
    EXPECT_EQ(warm.tokens, cold.tokens) << "temperature " << temperature;
    // Again: the first doc.size() positions are still the document's.
    const Generated again = generate(*engine, prompt, static_cast<int64_t>(doc.size()), 24, temperature);
    EXPECT_EQ(again.stats.reused_tokens, static_cast<int64_t>(doc.size()));
    EXPECT_EQ(again.tokens, cold.tokens);
  }
}

TEST(InprocEngine, MatchesTheDecodeLoopOfRaGenerate) {
  const Tokens prompt = bytes("The magic number is");
  auto engine = make_engine();
  const Generated run = generate(*engine, prompt, 0, 30, 0.7f);

  const Model model = make_synthetic_model(small_spec());
  BackendOptions options;
  options.threads = 1;
  auto backend = make_cpu_backend(model, options);
  const auto tokenizer = make_byte_tokenizer(258);
  GenerateOptions gen;
  gen.max_new_tokens = 30;
  gen.temperature = 0.7f;
  gen.seed = 42;
  std::string text;
  ra::generate(*backend, *tokenizer, prompt, gen, [&](std::string_view piece) { text += piece; });
  std::string ours;
  for (const int32_t t : run.tokens) ours += static_cast<char>(t);
  EXPECT_EQ(ours, text);
}

TEST(InprocEngine, AContextNoLongerInTheCacheIsPrefilledCold) {
  auto engine = make_engine();
  const Tokens doc = bytes(document());
  Tokens prompt = doc;
  prompt.push_back('?');
  generate(*engine, doc, 0, 0);
  const Generated other = generate(*engine, bytes("Something else entirely"), 0, 4);
  EXPECT_EQ(other.stats.reused_tokens, 0);
  const Generated cold = generate(*engine, prompt, static_cast<int64_t>(doc.size()), 8);
  EXPECT_EQ(cold.stats.reused_tokens, 0);
  const Generated warm = generate(*engine, prompt, static_cast<int64_t>(doc.size()), 8);
  EXPECT_EQ(warm.stats.reused_tokens, static_cast<int64_t>(doc.size()));  // the cold run left it there
  EXPECT_EQ(warm.tokens, cold.tokens);
}

TEST(InprocEngine, APromptThatIsTheWholeContextRecomputesOnlyItsLastToken) {
  auto engine = make_engine();
  const Tokens doc = bytes(document());
  const Generated cold = generate(*engine, doc, 0, 6);
  const Generated warm = generate(*engine, doc, static_cast<int64_t>(doc.size()), 6);
  EXPECT_EQ(warm.stats.reused_tokens, static_cast<int64_t>(doc.size()) - 1);
  EXPECT_EQ(warm.tokens, cold.tokens);
}

TEST(InprocEngine, PrefillPiecesGiveTheNumbersOfOneCall) {
  const Tokens prompt = bytes(document() + document());
  auto whole = make_engine("full", 0);
  auto pieces = make_engine("full", 256);
  EXPECT_EQ(generate(*whole, prompt, 0, 16).tokens, generate(*pieces, prompt, 0, 16).tokens);
}

TEST(InprocEngine, CancelStopsBeforeTheNextToken) {
  auto engine = make_engine();
  const Tokens prompt = bytes("count with me");
  std::atomic<bool> cancel{false};
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 100;
  r.stop_tokens = kStops;
  r.cancel = &cancel;
  Collect sink;
  sink.cancel_after = &cancel;
  sink.cancel_at = 3;
  const GenerationStats stats = engine->generate(r, sink);
  EXPECT_EQ(stats.finish, FinishReason::kCancelled);
  EXPECT_EQ(sink.tokens.size(), 3u);
  EXPECT_EQ(stats.generated_tokens, 3);
  // Cancelled before it starts: nothing runs.
  Collect none;
  EXPECT_EQ(engine->generate(r, none).finish, FinishReason::kCancelled);
  EXPECT_TRUE(none.tokens.empty());
}

TEST(InprocEngine, StopTokensAndTheSinkEndAGeneration) {
  auto engine = make_engine();
  const Tokens prompt = bytes("stop here");
  const Generated first = generate(*engine, prompt, 0, 5);
  ASSERT_FALSE(first.tokens.empty());
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 5;
  const Tokens stops = {first.tokens[0]};
  r.stop_tokens = stops;
  Collect sink;
  const GenerationStats stats = engine->generate(r, sink);
  EXPECT_EQ(stats.finish, FinishReason::kStop);
  EXPECT_TRUE(sink.tokens.empty());

  struct StopAfterTwo final : TokenSink {
    int n = 0;
    bool on_token(int32_t, const StepStats&) override { return ++n < 2; }
  } two;
  r.stop_tokens = {};
  const GenerationStats s2 = engine->generate(r, two);
  EXPECT_EQ(s2.finish, FinishReason::kStop);
  EXPECT_EQ(s2.generated_tokens, 2);
}

TEST(InprocEngine, RefusesBadRequestsBeforeAnyWorkAsPlainErrors) {
  auto engine = make_engine();
  Collect sink;
  const Tokens empty, bad_id = {256, 300}, too_long(3000, 65), ok = bytes("x");
  GenerationRequest r;
  r.max_tokens = 1;
  for (const Tokens* p : {&empty, &bad_id, &too_long}) {
    r.prompt = *p;
    EXPECT_THROW(engine->generate(r, sink), Error);
  }
  r.prompt = ok;
  r.sampling.top_p = 0.0f;
  try {
    engine->generate(r, sink);
    ADD_FAILURE() << "expected ra::Error";
  } catch (const EngineFailure&) {
    ADD_FAILURE() << "a refusal is not an engine failure";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("top_p"));
  }
  EXPECT_TRUE(engine->health().ok);
}

TEST(InprocEngine, WindowModeServesButCannotReuseContexts) {
  auto engine = make_engine("window");
  EXPECT_THAT(engine->info().contexts_unsupported, HasSubstr("mode window"));
  const Tokens doc = bytes(document());
  generate(*engine, doc, 0, 0);
  Tokens prompt = doc;
  prompt.push_back('?');
  const Generated run = generate(*engine, prompt, static_cast<int64_t>(doc.size()), 4);
  EXPECT_EQ(run.stats.reused_tokens, 0);
  EXPECT_EQ(run.tokens.size(), 4u);
}

// A backend that fails its forward pass, as a device error or a lost retriever would.
class FailingBackend final : public Backend {
 public:
  FailingBackend() { config_.vocab_size = 258; }
  std::string name() const override { return "failing"; }
  const ModelConfig& config() const override { return config_; }
  void forward(std::span<const int32_t>, std::span<float>) override { throw Error("retriever rank 3 stopped answering"); }
  int64_t position() const override { return 0; }
  int64_t max_positions() const override { return 64; }
  void reset() override {}
  void fill_cache_for_timing(int64_t, uint64_t) override {}

 private:
  ModelConfig config_;
};

TEST(InprocEngine, ABackendFailureIsAnEngineFailureAndStaysInItsHealth) {
  InprocEngine engine(std::make_unique<Model>(), std::make_unique<FailingBackend>(), {});
  EXPECT_THAT(engine.info().contexts_unsupported, HasSubstr("not supported by the failing backend"));
  const Tokens prompt = bytes("hi");
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 1;
  Collect sink;
  try {
    engine.generate(r, sink);
    ADD_FAILURE() << "expected EngineFailure";
  } catch (const EngineFailure& e) {
    EXPECT_THAT(e.what(), HasSubstr("retriever rank 3 stopped answering"));
  }
  EXPECT_FALSE(engine.health().ok);
  EXPECT_THAT(engine.health().cause, HasSubstr("retriever rank 3"));
  EXPECT_THROW(engine.generate(r, sink), EngineFailure);
}

TEST(BackendTruncate, CpuFullAttentionContinuesFromTheKeptPositions) {
  const Model model = make_synthetic_model(small_spec());
  BackendOptions options;
  options.threads = 1;
  auto backend = make_cpu_backend(model, options);
  const Tokens prompt = bytes(document());
  const size_t keep = 300;
  std::vector<float> cold(258), warm(258);
  backend->forward(prompt, cold);
  backend->reset();
  backend->forward(std::span(prompt).first(keep), warm);
  const Tokens detour = bytes("a detour that the truncation forgets");
  backend->forward(detour, warm);
  backend->truncate(static_cast<int64_t>(keep));
  EXPECT_EQ(backend->position(), static_cast<int64_t>(keep));
  backend->forward(std::span(prompt).subspan(keep), warm);
  EXPECT_EQ(backend->position(), static_cast<int64_t>(prompt.size()));
  for (size_t i = 0; i < cold.size(); ++i) EXPECT_NEAR(warm[i], cold[i], 1e-4f) << i;
  EXPECT_THROW(backend->truncate(backend->position() + 1), Error);
}

TEST(BackendTruncate, WithAStaticSetTheWindowComesBackFromTheCache) {
  const Model model = make_synthetic_model(small_spec());
  BackendOptions options;
  options.threads = 1;
  options.static_set = {true, 16, 64, nullptr};  // window mode: what leaves the window is dropped
  auto backend = make_cpu_backend(model, options);
  const Tokens prompt = bytes(document());
  std::vector<float> logits(258);
  backend->forward(prompt, logits);
  const int64_t n = backend->position();
  auto steps = [&](int count) {
    std::vector<std::vector<float>> out;
    for (int i = 0; i < count; ++i) {
      const int32_t t[1] = {static_cast<int32_t>('a' + i)};
      backend->forward(t, logits);
      out.push_back(logits);
    }
    return out;
  };
  const auto first = steps(100);  // far past the window: positions n - 64 ... left it
  backend->truncate(n);
  EXPECT_EQ(backend->position(), n);
  EXPECT_EQ(steps(100), first);
  FailingBackend other;
  try {
    other.truncate(0);
    ADD_FAILURE() << "expected ra::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not supported by the failing backend"));
  }
}

TEST(BackendKv, ReadAndWrittenBackTheCacheContinuesAsBefore) {
  const Model model = make_synthetic_model(small_spec());
  BackendOptions options;
  options.threads = 1;
  auto a = make_cpu_backend(model, options);
  auto b = make_cpu_backend(model, options);
  const Tokens prompt = bytes(document());
  std::vector<float> la(258), lb(258);
  a->forward(prompt, la);
  const int64_t n = a->position();
  const ModelConfig& c = model.config;
  const auto floats = static_cast<size_t>(c.n_layers * c.n_kv_heads * n * c.head_dim);
  std::vector<float> k(floats), v(floats);
  a->read_kv(0, n, k, v);
  b->write_kv(0, n, k, v);
  EXPECT_EQ(b->position(), n);
  const Tokens more = bytes(" and more");
  a->forward(more, la);
  b->forward(more, lb);
  EXPECT_EQ(la, lb);
  EXPECT_THROW(a->read_kv(0, a->position() + 1, k, v), Error);
  std::vector<float> small(3);
  EXPECT_THROW(b->write_kv(0, 1, small, small), Error);
  FailingBackend other;
  EXPECT_THROW(other.read_kv(0, 0, {}, {}), Error);
}

}  // namespace
}  // namespace ra::serve
