// The engine of `ra serve`'s worker rank over real RetrieverService instances on threads, reached over
// in-process channels (the multi-process version is serve_mpi_test.sh): a prebuilt context reused
// from the retrievers' session tails gives the tokens a cold prefill gives, scanning the same keys at
// every step (flat, or a grouped graph search, over every key), and the tokens of the same context
// rebuilt (any top-k); requests return the retrievers to the context (kRewind); a cancelled prefill leaves the engine usable; saved contexts load back, and corrupt or
// mismatched saves are refused naming the file and field; a retriever that leaves fails the engine.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "cpu_retriever/retriever_service.h"
#include "gpu_worker/backend/cuda/static_set.h"
#include "gpu_worker/model/synthetic_model.h"
#include "gpu_worker/serve/pipeline_engine.h"
#include "tests/support/small_model.h"
#include "transport/heartbeat.h"
#include "transport/inproc_channel.h"

namespace ra::serve {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Tokens = std::vector<int32_t>;

struct PipelineSetup {
  retriever::IndexKind kind = retriever::IndexKind::kFlat;
  int top_k = 100000;  // every offloaded key
  int ef = 0;          // the graph's beam (0: the index's default)
  int64_t sinks = 8, window = 16;
  int retrievers = 2;
  bool graph_per_kv_head = false;  // kGraph: one graph per kv head, searched once for its query group
  retriever::KvDtypes store = retriever::KvDtype::kF32;  // the retrievers' KV store
  KvWireFormat wire;                                     // kBuild's rows (the launcher's kv_wire_format)
  bool window_reach = false;  // the CPU backend behind WindowReach: it returns where the cuda backend can
};

// The CPU backend, returning only to the positions a backend that keeps just the window reaches: the
// cuda backend's own rule (cuda::window_reachable, gpu_worker/backend/cuda/static_set.h).
class WindowReach final : public Backend {
 public:
  WindowReach(std::unique_ptr<Backend> inner, int64_t sinks, int64_t window)
      : inner_(std::move(inner)), sinks_(sinks), window_(window) {}
  std::string name() const override { return inner_->name(); }
  const ModelConfig& config() const override { return inner_->config(); }
  void forward(std::span<const int32_t> tokens, std::span<float> logits) override { inner_->forward(tokens, logits); }
  int64_t position() const override { return inner_->position(); }
  int64_t max_positions() const override { return inner_->max_positions(); }
  void reset() override {
    inner_->reset();
    base_ = -1;
  }
  bool can_truncate() const override { return true; }
  bool can_truncate_to(int64_t p) const override {
    return cuda::window_reachable(p, position(), base_, sinks_, window_);
  }
  void truncate(int64_t p) override {
    if (!can_truncate_to(p)) raise("WindowReach: truncate({}) at position {} with base {}", p, position(), base_);
    inner_->truncate(p);
  }
  void keep_base() override { base_ = position(); }
  void read_kv(int64_t b, int64_t e, std::span<float> k, std::span<float> v) const override {
    inner_->read_kv(b, e, k, v);
  }
  void write_kv(int64_t b, int64_t e, std::span<const float> k, std::span<const float> v) override {
    inner_->write_kv(b, e, k, v);
    base_ = -1;
  }
  void fill_cache_for_timing(int64_t position, uint64_t seed) override { inner_->fill_cache_for_timing(position, seed); }

 private:
  std::unique_ptr<Backend> inner_;
  int64_t sinks_, window_;
  int64_t base_ = -1;
};

// An engine and its retriever threads; the destructor tells the retrievers to leave and joins them.
class Pipeline {
 public:
  explicit Pipeline(const PipelineSetup& s = {}) {
    auto model = std::make_unique<Model>(make_synthetic_model(test::small_synthetic_spec(128, 2048)));
    model->weight_dtype = "F32";
    const ModelConfig& c = model->config;
    RetrievalClientOptions copts;
    copts.geometry = {c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale()};
    copts.top_k = s.top_k;
    copts.ef = s.ef;
    copts.kv_rows = s.wire;
    std::vector<transport::Channel*> channels;
    for (int r = 0; r < s.retrievers; ++r) {
      auto [w, peer] = transport::make_inproc_pair("worker", "retriever " + std::to_string(r), std::chrono::minutes(5));
      retriever::RetrieverServiceConfig cfg;
      cfg.geometry = {c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale()};
      cfg.dtype = s.store;
      for (int64_t l = 0; l < c.n_layers; ++l) {
        std::vector<int64_t> heads;
        for (int64_t g = 0; g < c.n_kv_heads; ++g) {
          if (g % s.retrievers == r) heads.push_back(g);
        }
        cfg.owned_kv_heads.push_back(heads);
      }
      cfg.index.kind = s.kind;
      cfg.index.graph_per_kv_head = s.graph_per_kv_head;
      cfg.search_group = 0;  // with graph_per_kv_head: the whole group per traversal
      cfg.index.warm_history = 0;  // searches not seeded by earlier answers: results depend on the state only
      cfg.threads = 1;
      cfg.sinks = s.sinks;
      cfg.window = s.window;
      cfg.plan_digest = 7;
      copts.owned_kv_heads.push_back(cfg.owned_kv_heads);
      threads_.emplace_back([cfg, ch = std::shared_ptr<transport::Channel>(std::move(peer))] {
        // As the retriever process does: alive while it builds for long (slow under sanitizers).
        transport::HeartbeatThread beat({ch.get()});
        try {
          retriever::RetrieverService service(cfg);
          service.serve(*ch);
        } catch (const std::exception&) {
          // The worker end went away first (a test that fails the engine).
        }
      });
      channels.push_back(w.get());
      ends_.push_back(std::move(w));
    }
    beat_ = std::make_unique<transport::HeartbeatThread>(channels);
    auto client = std::make_unique<RetrievalClient>(channels, copts);
    client->handshake(7, "{}");
    PipelineEngineOptions o;
    o.mode = s.kind == retriever::IndexKind::kGraph ? "retrieval" : "flat";
    o.threads = 1;
    o.max_positions = 2048;
    o.sinks = s.sinks;
    o.window = s.window;
    o.capture_queries = s.kind == retriever::IndexKind::kGraph;
    if (s.window_reach) {
      o.make_backend = [](const Model& m, const BackendOptions& bo) -> std::unique_ptr<Backend> {
        return std::make_unique<WindowReach>(make_cpu_backend(m, bo), bo.static_set.sinks, bo.static_set.window);
      };
    }
    engine = std::make_unique<PipelineEngine>(std::move(model), std::move(client), channels, o);
  }
  ~Pipeline() {
    if (engine) engine->shutdown(std::chrono::seconds(5));
    engine.reset();
    beat_.reset();
    ends_.clear();
    for (auto& t : threads_) t.join();
  }
  // Makes every retriever leave, as if they had died.
  void stop_retrievers() { engine->shutdown(std::chrono::seconds(5)); }

  std::unique_ptr<PipelineEngine> engine;

 private:
  std::vector<std::unique_ptr<transport::Channel>> ends_;
  std::unique_ptr<transport::HeartbeatThread> beat_;  // the worker ends'
  std::vector<std::thread> threads_;
};

struct Collect final : TokenSink {
  Tokens tokens;
  std::vector<int64_t> scanned;  // keys the retrievers scored in each decode step after the first token
  bool on_token(int32_t token, const StepStats& step) override {
    if (!tokens.empty()) scanned.push_back(step.keys_scanned);  // the first token's counts the prompt's steps
    tokens.push_back(token);
    EXPECT_GE(step.keys_scanned, 0);
    return true;
  }
};

struct Generated {
  Tokens tokens;
  std::vector<int64_t> scanned;
  GenerationStats stats;
};

Generated generate(Engine& e, const Tokens& prompt, int64_t context, int64_t max_tokens, float temperature = 0.0f,
             const std::atomic<bool>* cancel = nullptr) {
  GenerationRequest r;
  r.prompt = prompt;
  r.reusable_prefix = context;
  r.sampling.temperature = temperature;
  r.sampling.seed = 11;
  r.max_tokens = max_tokens;
  r.cancel = cancel;
  Collect sink;
  Generated out;
  out.stats = e.generate(r, sink);
  out.tokens = std::move(sink.tokens);
  out.scanned = std::move(sink.scanned);
  return out;
}

// BOS + bytes: a document far longer than sinks + window, and a question after it.
Tokens document() {
  Tokens t = {256};
  for (int i = 0; i < 40; ++i) {
    for (char ch : "Line " + std::to_string(i) + ": key " + std::to_string(i * 7 % 100) + ". ") t.push_back(ch);
  }
  return t;
}
Tokens with_question(const Tokens& doc, const std::string& q) {
  Tokens t = doc;
  t.insert(t.end(), q.begin(), q.end());
  return t;
}

TEST(PipelineEngine, AReusedContextGivesTheColdPrefillsTokensAndSkipsItsPrefill) {
  Pipeline p;
  const Tokens doc = document();
  const Tokens prompt = with_question(doc, " Which key is on line 3?");
  const Generated cold = generate(*p.engine, prompt, 0, 24);
  EXPECT_EQ(cold.stats.reused_tokens, 0);
  EXPECT_EQ(cold.tokens.size(), 24u);

  const Generated build = generate(*p.engine, doc, 0, 0);  // POST /v1/contexts: prefill only
  EXPECT_EQ(build.stats.reused_tokens, 0);
  const Generated warm = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 24);
  EXPECT_EQ(warm.stats.reused_tokens, static_cast<int64_t>(doc.size()));
  EXPECT_EQ(warm.tokens, cold.tokens);
  // Flat over every key scores every offloaded key once per query head: the shards' and the session
  // tail's together are the cold prefill's offloaded set at every step, none lost and none twice.
  EXPECT_EQ(warm.scanned, cold.scanned);
  // Again: the session tail of the first request is dropped (kRewind), so the same tokens come back
  // from the same keys.
  const Generated again = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 24);
  EXPECT_GE(again.stats.reused_tokens, static_cast<int64_t>(doc.size()));
  EXPECT_EQ(again.tokens, cold.tokens);
  EXPECT_EQ(again.scanned, cold.scanned);
  // Another question on the same context, and sampling with a seed.
  const Tokens other = with_question(doc, " And on line 12?");
  const Generated other_warm = generate(*p.engine, other, static_cast<int64_t>(doc.size()), 16, 0.9f);
  EXPECT_EQ(other_warm.stats.reused_tokens, static_cast<int64_t>(doc.size()) + 1);  // " " is shared with `prompt`
  const Generated other_cold_setup = generate(*p.engine, Tokens{256, 'x'}, 0, 1);  // the base is replaced
  const Generated other_rebuilt = generate(*p.engine, other, static_cast<int64_t>(doc.size()), 16, 0.9f);
  EXPECT_EQ(other_rebuilt.stats.reused_tokens, 0);  // not held any more: the context is prefilled again
  EXPECT_EQ(other_rebuilt.tokens, other_warm.tokens);
  // The prompt that is exactly the context: its last token's logits were kept with it.
  const Generated exact_warm = generate(*p.engine, doc, static_cast<int64_t>(doc.size()), 8);
  EXPECT_EQ(exact_warm.stats.reused_tokens, static_cast<int64_t>(doc.size()));
  generate(*p.engine, Tokens{256, 'y'}, 0, 1);
  const Generated exact_cold = generate(*p.engine, doc, 0, 8);
  EXPECT_EQ(exact_cold.tokens, exact_warm.tokens);
  EXPECT_TRUE(p.engine->health().ok);
}

// The same with a graph per kv head searched once for its query group: with a beam over every key the
// search retrieves them all, and every member's answer gets the session tail's tokens too.
TEST(PipelineEngine, AGroupedGraphSearchOverEveryKeyGivesTheColdPrefillsTokens) {
  PipelineSetup s;
  s.kind = retriever::IndexKind::kGraph;
  s.graph_per_kv_head = true;
  s.ef = 100000;
  Pipeline p(s);
  const Tokens doc = document();
  const Tokens prompt = with_question(doc, " Which key is on line 3?");
  const Generated cold = generate(*p.engine, prompt, 0, 24);
  generate(*p.engine, doc, 0, 0);
  const Generated warm = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 24);
  EXPECT_EQ(warm.stats.reused_tokens, static_cast<int64_t>(doc.size()));
  EXPECT_EQ(warm.tokens, cold.tokens);
  EXPECT_EQ(warm.scanned, cold.scanned);  // every key once per query head, the tail's included
}

TEST(PipelineEngine, WithFewKeysRetrievedAHeldContextEqualsItsRebuild) {
  // Flat, a graph per query head, and a graph per kv head whose one traversal serves the group (the
  // session tail is merged into each member's answer).
  for (const auto& [kind, per_kv_head] : {std::pair{retriever::IndexKind::kFlat, false},
                                         std::pair{retriever::IndexKind::kGraph, false},
                                         std::pair{retriever::IndexKind::kGraph, true}}) {
    PipelineSetup s;
    s.kind = kind;
    s.graph_per_kv_head = per_kv_head;
    s.top_k = 6;
    Pipeline p(s);
    const Tokens doc = document();
    const Tokens prompt = with_question(doc, " Which key is on line 3?");
    generate(*p.engine, doc, 0, 0);
    const Generated first = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 40);
    EXPECT_EQ(first.stats.reused_tokens, static_cast<int64_t>(doc.size()));
    const Generated second = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 40);
    generate(*p.engine, Tokens{256, 'z'}, 0, 1);
    const Generated rebuilt = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 40);
    EXPECT_EQ(rebuilt.stats.reused_tokens, 0);
    EXPECT_EQ(second.tokens, first.tokens) << static_cast<int>(kind) << " per kv head " << per_kv_head;
    EXPECT_EQ(rebuilt.tokens, first.tokens) << static_cast<int>(kind) << " per kv head " << per_kv_head;
  }
}

// A backend that keeps only the window (the cuda backend) returns to the base, or to a later position
// whose window it still holds; further back in a conversation it returns to the base and the tokens
// since run again. Every path gives the tokens of the backend that keeps every position's KV.
TEST(PipelineEngine, ABackendThatKeepsOnlyTheWindowGivesTheSameTokens) {
  PipelineSetup reach;
  reach.window_reach = true;
  Pipeline windowed(reach);
  Pipeline whole;  // the CPU backend: truncate reaches every position
  const Tokens doc = document();
  const auto base = static_cast<int64_t>(doc.size());
  const Tokens prompt = with_question(doc, " Which key is on line 3?");
  for (Pipeline* p : {&windowed, &whole}) generate(*p->engine, doc, 0, 0);
  const Generated first = generate(*windowed.engine, prompt, base, 24);
  EXPECT_EQ(first.stats.reused_tokens, base);  // the base itself is always reached
  EXPECT_EQ(first.tokens, generate(*whole.engine, prompt, base, 24).tokens);

  // The conversation goes on: prompt + answer + more. Held up to the end of the last answer's steps, the
  // live window holds the position: nothing runs again.
  Tokens turn = prompt;
  turn.insert(turn.end(), first.tokens.begin(), first.tokens.end() - 1);  // the last token never ran
  const Tokens turn2 = with_question(turn, " And line 5?");
  const Generated second = generate(*windowed.engine, turn2, base, 16);
  EXPECT_EQ(second.stats.reused_tokens, static_cast<int64_t>(turn.size()));
  EXPECT_EQ(second.tokens, generate(*whole.engine, turn2, base, 16).tokens);

  // Back to a position 20 tokens after the base (the window is 16): its window left the live ring, so the
  // engine returns to the base and runs those 20 tokens again.
  Tokens branch(prompt.begin(), prompt.begin() + base + 20);
  const Tokens branched = with_question(branch, "? What about line 7?");
  const Generated third = generate(*windowed.engine, branched, base, 16);
  EXPECT_EQ(third.stats.reused_tokens, base);
  const Generated third_whole = generate(*whole.engine, branched, base, 16);
  EXPECT_EQ(third_whole.stats.reused_tokens, base + 20);
  EXPECT_EQ(third.tokens, third_whole.tokens);
  // And the same branch rebuilt cold.
  generate(*windowed.engine, Tokens{256, 'q'}, 0, 1);
  EXPECT_EQ(generate(*windowed.engine, branched, base, 16).tokens, third.tokens);
  EXPECT_TRUE(windowed.engine->health().ok);
}

TEST(PipelineEngine, ACancelledRequestLeavesTheEngineUsable) {
  Pipeline p;
  const Tokens doc = document();
  const Tokens prompt = with_question(doc, " Which key is on line 3?");
  const Generated cold = generate(*p.engine, prompt, 0, 12);
  for (int delay_us : {0, 300, 3000}) {
    std::atomic<bool> cancel{false};
    std::thread t([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      cancel.store(true);
    });
    const Generated r = generate(*p.engine, with_question(doc, " anything"), 0, 200, 0.0f, &cancel);
    t.join();
    EXPECT_EQ(r.stats.finish, FinishReason::kCancelled);
    const Generated after = generate(*p.engine, prompt, 0, 12);
    EXPECT_EQ(after.tokens, cold.tokens) << delay_us;
  }
}

TEST(PipelineEngine, ASavedContextLoadsIntoAnotherServerAndBadSavesAreRefused) {
  const fs::path dir = fs::path(::testing::TempDir()) / "ra-pipeline-ctx";
  fs::remove_all(dir);
  const Tokens doc = document();
  const Tokens prompt = with_question(doc, " Which key is on line 3?");
  Generated reference;
  {
    Pipeline p;
    p.engine->prefill_and_save(doc, dir.string());
    reference = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 20);
    EXPECT_EQ(reference.stats.reused_tokens, static_cast<int64_t>(doc.size()));
    EXPECT_THROW(p.engine->prefill_and_save(doc, dir.string()), Error);  // never over another save
  }
  for (const char* f : {"manifest.json", "worker-kv.bin", "logits.bin", "layer-000.bin", "layer-001.bin",
                        "retriever-000.shards", "retriever-001.shards"}) {
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  }
  {
    // The same retrievers and plan: their shards are restored, no index is built.
    Pipeline p;
    EXPECT_EQ(p.engine->load(dir.string()), doc);
    EXPECT_TRUE(p.engine->load_restored_indexes()) << p.engine->load_note();
    EXPECT_EQ(p.engine->retrieval_stats().build_seconds, 0.0);
    const Generated loaded = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 20);
    EXPECT_EQ(loaded.stats.reused_tokens, static_cast<int64_t>(doc.size()));
    EXPECT_EQ(loaded.tokens, reference.tokens);
    const Generated exact = generate(*p.engine, doc, static_cast<int64_t>(doc.size()), 4);
    EXPECT_EQ(exact.stats.reused_tokens, static_cast<int64_t>(doc.size()));
  }
  {
    // Another retriever count (another shard plan): rebuilt from the saved rows, the same tokens.
    PipelineSetup one;
    one.retrievers = 1;
    Pipeline p(one);
    EXPECT_EQ(p.engine->load(dir.string()), doc);
    EXPECT_FALSE(p.engine->load_restored_indexes());
    EXPECT_THAT(p.engine->load_note(), HasSubstr("shard plan"));
    EXPECT_GT(p.engine->retrieval_stats().build_seconds, 0.0);
    EXPECT_EQ(generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 20).tokens, reference.tokens);
  }
  auto load_error = [&](const fs::path& from, const PipelineSetup& s = {}) {
    Pipeline p(s);
    try {
      p.engine->load(from.string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  PipelineSetup wider;
  wider.window = 24;
  EXPECT_THAT(load_error(dir, wider), AllOf(HasSubstr("manifest.json"), HasSubstr("identity.window")));
  PipelineSetup graph;
  graph.kind = retriever::IndexKind::kGraph;
  EXPECT_THAT(load_error(dir, graph), AllOf(HasSubstr("manifest.json"), HasSubstr("identity.mode")));
  // One flipped byte in a layer file (read when the shards are rebuilt: here, by one retriever) or in a
  // retriever's shard file (checked by that retriever before it uses any of it).
  const fs::path bad = fs::path(::testing::TempDir()) / "ra-pipeline-ctx-bad";
  auto flip = [&](const char* file) {
    fs::remove_all(bad);
    fs::copy(dir, bad);
    std::fstream f(bad / file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    const char was = static_cast<char>(f.get());
    f.seekp(200);
    f.put(static_cast<char>(was ^ 0x5a));
  };
  PipelineSetup one;
  one.retrievers = 1;
  flip("layer-001.bin");
  EXPECT_THAT(load_error(bad, one), AllOf(HasSubstr("layer-001.bin"), HasSubstr("checksum"), HasSubstr("corrupt")));
  flip("retriever-001.shards");
  EXPECT_THAT(load_error(bad), AllOf(HasSubstr("retriever 1"), HasSubstr("retriever-001.shards"),
                                     HasSubstr("checksum"), HasSubstr("corrupt")));
  fs::remove(bad / "retriever-000.shards");
  EXPECT_THAT(load_error(bad), AllOf(HasSubstr("retriever-000.shards"), HasSubstr("cannot open")));
  fs::remove(bad / "manifest.json");
  EXPECT_THAT(load_error(bad), HasSubstr("manifest.json"));
  fs::remove_all(bad);
  fs::remove_all(dir);
}

// Issue 22 item 1: a save's layer files hold the rows as they were shipped, int8 for int8 stores (about a
// quarter of float32's bytes). They load into int8 stores (rebuilt by another retriever count: the same
// tokens) and are refused, naming the file and field, by stores that cannot take int8 rows; float32
// rows load into int8 stores coded as a cold prefill codes them (the same tokens as one).
TEST(PipelineEngine, SavedInt8RowsLoadIntoInt8StoresOnly) {
  const fs::path dir = fs::path(::testing::TempDir()) / "ra-pipeline-ctx-int8";
  const fs::path f32_dir = fs::path(::testing::TempDir()) / "ra-pipeline-ctx-f32";
  fs::remove_all(dir);
  fs::remove_all(f32_dir);
  const Tokens doc = document();
  const Tokens prompt = with_question(doc, " Which key is on line 5?");
  const auto context = static_cast<int64_t>(doc.size());
  PipelineSetup int8;
  int8.store = retriever::KvDtype::kQ8;
  int8.wire = {WireRows::kQ8, WireRows::kQ8};
  Generated reference;
  {
    Pipeline p(int8);
    p.engine->prefill_and_save(doc, dir.string());
    reference = generate(*p.engine, prompt, context, 12);
  }
  const int64_t rows = (context - int8.sinks - int8.window) * 2;  // offloaded positions x kv heads
  EXPECT_EQ(fs::file_size(dir / "layer-000.bin"), sizeof(LayerHeader) + 2 * wire_block_bytes(WireRows::kQ8, rows, 16));
  PipelineSetup int8_one = int8;
  int8_one.retrievers = 1;  // another shard plan: rebuilt from the layer files
  {
    Pipeline p(int8_one);
    EXPECT_EQ(p.engine->load(dir.string()), doc);
    EXPECT_FALSE(p.engine->load_restored_indexes());
    EXPECT_EQ(generate(*p.engine, prompt, context, 12).tokens, reference.tokens);
  }
  {
    PipelineSetup f32_one;
    f32_one.retrievers = 1;
    Pipeline p(f32_one);
    try {
      p.engine->load(dir.string());
      ADD_FAILURE() << "int8 rows loaded into f32 stores";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), AllOf(HasSubstr("layer-000.bin"), HasSubstr("field 'key_rows' is int8"),
                                  HasSubstr("take f32 keys")));
    }
  }
  {
    Pipeline saver;  // float32 stores and rows
    saver.engine->prefill_and_save(doc, f32_dir.string());
  }
  Generated cold;
  {
    Pipeline p(int8_one);
    cold = generate(*p.engine, prompt, context, 12);
  }
  Pipeline p(int8_one);
  EXPECT_EQ(p.engine->load(f32_dir.string()), doc);
  EXPECT_EQ(generate(*p.engine, prompt, context, 12).tokens, cold.tokens);
  fs::remove_all(dir);
  fs::remove_all(f32_dir);
}

// The attention-aware graph, one per kv head and searched by its query group, with a top-k below the
// context: a load restores every graph as saved, so the loaded server answers exactly as the one that saved.
TEST(PipelineEngine, ASavedGraphContextAnswersAsTheServerThatSavedIt) {
  const fs::path dir = fs::path(::testing::TempDir()) / "ra-pipeline-ctx-graph";
  fs::remove_all(dir);
  PipelineSetup graph;
  graph.kind = retriever::IndexKind::kGraph;
  graph.graph_per_kv_head = true;
  graph.top_k = 6;
  const Tokens doc = document();
  const Tokens prompt = with_question(doc, " Which key is on line 3?");
  Generated reference;
  {
    Pipeline p(graph);
    p.engine->prefill_and_save(doc, dir.string());
    reference = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 16);
  }
  Pipeline p(graph);
  EXPECT_EQ(p.engine->load(dir.string()), doc);
  EXPECT_TRUE(p.engine->load_restored_indexes()) << p.engine->load_note();
  const Generated loaded = generate(*p.engine, prompt, static_cast<int64_t>(doc.size()), 16);
  EXPECT_EQ(loaded.tokens, reference.tokens);
  EXPECT_EQ(loaded.scanned, reference.scanned);  // the same keys scored at every step: the same graphs
  fs::remove_all(dir);
}

TEST(PipelineEngine, ARetrieverThatLeavesFailsTheEngineAndItsHealth) {
  Pipeline p;
  const Tokens doc = document();
  generate(*p.engine, doc, 0, 2);
  p.stop_retrievers();
  // Between requests: idle() notices.
  for (int i = 0; i < 100 && p.engine->health().ok; ++i) {
    p.engine->idle();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(p.engine->health().ok);
  EXPECT_THAT(p.engine->health().cause, HasSubstr("retriever"));
  EXPECT_THROW(generate(*p.engine, doc, 0, 2), EngineFailure);
}

TEST(PipelineEngine, ARetrieverThatLeavesMidRequestFailsIt) {
  Pipeline p;
  const Tokens doc = document();
  generate(*p.engine, doc, 0, 2);
  p.stop_retrievers();
  try {
    generate(*p.engine, with_question(doc, "?"), 0, 4);
    ADD_FAILURE() << "expected EngineFailure";
  } catch (const EngineFailure& e) {
    EXPECT_THAT(e.what(), HasSubstr("retriever"));
  }
  EXPECT_FALSE(p.engine->health().ok);
}

}  // namespace
}  // namespace ra::serve
