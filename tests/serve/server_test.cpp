// The HTTP server in this process, over real sockets, with a scripted engine: loading and failure
// states, the queue (429 when full), cancellation when the client disconnects (streamed, waiting for a
// body, or still queued), deadlines, stop strings, metrics, and shutdown in the middle of a request.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>

#include "gpu_worker/model/tokenizer.h"
#include "gpu_worker/serve/engine.h"
#include "gpu_worker/serve/server.h"

namespace ra::serve {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

// Emits 'a', 'b', 'c', ... one token per `step`, after an optional gate opens; can fail on demand.
class FakeEngine final : public Engine {
 public:
  explicit FakeEngine(std::chrono::milliseconds step) : step_(step) {
    info_.backend = "fake";
    info_.mode = "full";
    info_.max_positions = 512;
    info_.vocab_size = 258;
  }

  const EngineInfo& info() const override { return info_; }
  EngineHealth health() const override {
    std::lock_guard lock(mutex_);
    return {cause_.empty(), cause_};
  }

  GenerationStats generate(const GenerationRequest& r, TokenSink& sink) override {
    ++started;
    {
      std::unique_lock lock(mutex_);
      gate_cv_.wait_for(lock, 20s, [&] { return open_; });
      if (fail_) {
        cause_ = "retriever rank 2 on host h1 stopped answering";
        throw EngineFailure(cause_);
      }
    }
    GenerationStats stats;
    stats.prompt_tokens = static_cast<int64_t>(r.prompt.size());
    stats.finish = FinishReason::kLength;
    for (int64_t i = 0; i < r.max_tokens; ++i) {
      if (r.cancel && r.cancel->load()) {
        stats.finish = FinishReason::kCancelled;
        cancelled_at_tokens = emitted.load();
        break;
      }
      std::this_thread::sleep_for(step_);
      ++stats.generated_tokens;
      ++emitted;
      if (!sink.on_token('a' + static_cast<int32_t>(i % 26), {})) {
        stats.finish = FinishReason::kStop;
        break;
      }
    }
    ++ended;
    return stats;
  }

  void close_gate() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }
  void open_gate() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    gate_cv_.notify_all();
  }
  void fail_next() {
    std::lock_guard lock(mutex_);
    fail_ = true;
  }

  std::atomic<int> started{0}, ended{0};
  std::atomic<int64_t> emitted{0}, cancelled_at_tokens{-1};

 private:
  const std::chrono::milliseconds step_;
  EngineInfo info_;
  mutable std::mutex mutex_;
  std::condition_variable gate_cv_;
  bool open_ = true;
  bool fail_ = false;
  std::string cause_;
};

// Polls `condition` every 5 ms until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = SteadyClock::now() + timeout;
  while (SteadyClock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

class ServerTest : public testing::Test {
 protected:
  void start(ServeOptions options = {}, std::chrono::milliseconds step = 10ms, bool attach_now = true) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.log_requests = false;
    options.queue_capacity = 1;
    server_ = std::make_unique<Server>(options);
    port_ = server_->start();
    auto engine = std::make_unique<FakeEngine>(step);
    engine_ = engine.get();
    model_.name = "fake";
    model_.engine = std::move(engine);
    model_.tokenizer = make_byte_tokenizer(258);
    model_.chat.unavailable = "the fake model has no chat template";
    model_.bos_id = 256;
    model_.stop_tokens = {257};
    model_.chat_stop_tokens = {257};
    if (attach_now) attach();
  }
  void attach() { server_->attach(std::move(model_)); }

  std::unique_ptr<httplib::Client> client(std::chrono::milliseconds read_timeout = 20s) const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(read_timeout);
    return c;
  }

  httplib::Result post(const std::string& path, const json& body) const {
    return client()->Post(path, body.dump(), "application/json");
  }

  // The value of one sample line of /metrics (-1 when absent).
  double metric(const std::string& sample) const {
    const auto res = client()->Get("/metrics");
    if (!res) return -1;
    const std::string text = res->body;
    size_t at = 0;
    while ((at = text.find(sample + " ", at)) != std::string::npos) {
      if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + sample.size() + 1));
      ++at;
    }
    return -1;
  }
  double cancelled() const { return metric(R"(ra_requests_total{endpoint="completions",outcome="cancelled"})"); }

  static json completion(int64_t max_tokens, bool stream = false) {
    return {{"model", "fake"}, {"prompt", "hi"}, {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", stream}};
  }

  void TearDown() override {
    if (engine_) engine_->open_gate();
    if (server_) server_->stop();
  }

  std::unique_ptr<Server> server_;
  ServedModel model_;
  FakeEngine* engine_ = nullptr;
  int port_ = 0;
};

TEST_F(ServerTest, HealthIs503WhileLoadingThenOk) {
  start({}, 10ms, /*attach_now=*/false);
  auto health = client()->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(json::parse(health->body)["status"], "loading");
  auto early = post("/v1/completions", completion(2));
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 503);
  EXPECT_EQ(json::parse(early->body)["error"]["code"], "loading");
  attach();
  health = client()->Get("/health");
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
  EXPECT_EQ(metric("ra_engine_ready"), 1);
}

TEST_F(ServerTest, AFailedLoadIs503WithItsCause) {
  start({}, 10ms, /*attach_now=*/false);
  server_->fail_loading("model.safetensors: tensor lm_head.weight is missing");
  const auto health = client()->Get("/health");
  EXPECT_EQ(health->status, 503);
  EXPECT_THAT(health->body, HasSubstr("lm_head.weight is missing"));
  EXPECT_EQ(post("/v1/completions", completion(2))->status, 503);
}

TEST_F(ServerTest, CompletionModelsAndMetrics) {
  start();
  const auto res = post("/v1/completions", completion(4));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json body = json::parse(res->body);
  EXPECT_EQ(body["choices"][0]["text"], "abcd");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["completion_tokens"], 4);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 3);  // BOS + "hi"
  const auto models = client()->Get("/v1/models");
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "fake");

  const auto metrics = client()->Get("/metrics");
  EXPECT_THAT(metrics->get_header_value("Content-Type"), HasSubstr("text/plain"));
  for (const char* family :
       {"ra_requests_total", "ra_prompt_tokens_total", "ra_prompt_tokens_prefilled_total",
        "ra_prompt_tokens_reused_total", "ra_generated_tokens_total", "ra_time_to_first_token_seconds",
        "ra_token_latency_seconds", "ra_prefill_seconds", "ra_queue_depth", "ra_requests_running",
        "ra_engine_ready"}) {
    EXPECT_THAT(metrics->body, HasSubstr(std::string("# TYPE ") + family)) << family;
  }
  EXPECT_THAT(metrics->body, ::testing::Not(HasSubstr("ra_keys_scanned_total")));  // no retrievers here
  EXPECT_EQ(metric("ra_generated_tokens_total"), 4);
  EXPECT_EQ(metric(R"(ra_requests_total{endpoint="completions",outcome="ok"})"), 1);
  EXPECT_EQ(metric("ra_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(metric("ra_token_latency_seconds_count"), 3);
}

TEST_F(ServerTest, StreamsServerSentEventsEndingWithDone) {
  start();
  const auto res = post("/v1/completions", completion(3, /*stream=*/true));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/event-stream"));
  std::string text;
  std::string finish;
  size_t at = 0;
  std::vector<std::string> data;
  while (at < res->body.size()) {
    const size_t end = res->body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos);
    ASSERT_EQ(res->body.compare(at, 6, "data: "), 0);
    data.push_back(res->body.substr(at + 6, end - at - 6));
    at = end + 2;
  }
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.back(), "[DONE]");
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const json chunk = json::parse(data[i]);
    text += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, "abc");
  EXPECT_EQ(finish, "length");
}

TEST_F(ServerTest, StopStringsEndTheTextBeforeThem) {
  start();
  json body = completion(20);
  body["stop"] = {"de", "zz"};
  const json res = json::parse(post("/v1/completions", body)->body);
  EXPECT_EQ(res["choices"][0]["text"], "abc");
  EXPECT_EQ(res["choices"][0]["finish_reason"], "stop");
  EXPECT_LE(res["usage"]["completion_tokens"].get<int>(), 6);
}

TEST_F(ServerTest, AFullQueueAnswers429AndTheOthersStillRun) {
  start();  // queue capacity 1 (start() sets it)
  engine_->close_gate();
  std::thread a([&] { EXPECT_EQ(post("/v1/completions", completion(2))->status, 200); });
  ASSERT_TRUE(eventually([&] { return engine_->started == 1; }));
  std::thread b([&] { EXPECT_EQ(post("/v1/completions", completion(2))->status, 200); });
  ASSERT_TRUE(eventually([&] { return metric("ra_queue_depth") == 1; }));
  const auto c = post("/v1/completions", completion(2));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, 429);
  EXPECT_EQ(c->get_header_value("Retry-After"), "1");
  const json error = json::parse(c->body)["error"];
  EXPECT_EQ(error["type"], "rate_limit_error");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("busy"));
  EXPECT_EQ(metric(R"(ra_requests_total{endpoint="completions",outcome="rejected"})"), 1);
  EXPECT_EQ(client()->Get("/health")->status, 200);  // a full queue still answers health checks
  engine_->open_gate();
  a.join();
  b.join();
  EXPECT_EQ(engine_->ended, 2);
}

TEST_F(ServerTest, AStreamWhoseClientLeavesIsCancelledWithinOneToken) {
  start({}, 50ms);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = completion(1000, /*stream=*/true).dump();
  req.set_header("Content-Type", "application/json");
  int64_t at_close = -1;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (std::string_view(data, n).find("\"text\"") == std::string_view::npos) return true;
    at_close = engine_->emitted.load();
    return false;  // the client stops reading and closes the connection
  };
  auto c = client();
  c->send(req);
  c->stop();
  ASSERT_GE(at_close, 1);
  ASSERT_TRUE(eventually([&] { return engine_->cancelled_at_tokens >= 0; }, 3000ms));
  EXPECT_LE(engine_->cancelled_at_tokens - at_close, 1) << "tokens generated after the client left";
  EXPECT_TRUE(eventually([&] { return cancelled() == 1; }));
}

TEST_F(ServerTest, AClientThatGivesUpWaitingForABodyCancelsIt) {
  start({}, 50ms);
  auto c = client(/*read_timeout=*/300ms);
  const auto res = c->Post("/v1/completions", completion(1000).dump(), "application/json");
  EXPECT_FALSE(res);  // the client timed out and closed
  c->stop();
  ASSERT_TRUE(eventually([&] { return engine_->cancelled_at_tokens >= 0; }, 3000ms));
  EXPECT_LE(engine_->cancelled_at_tokens, 15);  // 300 ms of 50 ms tokens, and slack for a loaded machine
  EXPECT_TRUE(eventually([&] { return cancelled() == 1; }));
}

TEST_F(ServerTest, AQueuedRequestWhoseClientLeavesIsDropped) {
  start();
  engine_->close_gate();
  std::thread a([&] { EXPECT_EQ(post("/v1/completions", completion(2))->status, 200); });
  ASSERT_TRUE(eventually([&] { return engine_->started == 1; }));
  auto b = client(/*read_timeout=*/200ms);
  EXPECT_FALSE(b->Post("/v1/completions", completion(2).dump(), "application/json"));
  b->stop();
  EXPECT_TRUE(eventually([&] { return metric("ra_queue_depth") == 0 && cancelled() == 1; }));
  engine_->open_gate();
  a.join();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(engine_->started, 1);  // the dropped one never ran
}

TEST_F(ServerTest, AnEngineFailureIs503WithItsCauseAndHealthTurns503) {
  start();
  engine_->fail_next();
  const auto res = post("/v1/completions", completion(2));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  const json error = json::parse(res->body)["error"];
  EXPECT_EQ(error["code"], "engine_failed");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("retriever rank 2 on host h1"));
  const auto health = client()->Get("/health");
  EXPECT_EQ(health->status, 503);
  EXPECT_THAT(health->body, HasSubstr("retriever rank 2 on host h1"));
  EXPECT_EQ(post("/v1/completions", completion(2))->status, 503);
  EXPECT_EQ(metric(R"(ra_requests_total{endpoint="completions",outcome="failed"})"), 2);
  EXPECT_EQ(metric("ra_engine_ready"), 0);
}

TEST_F(ServerTest, ARequestPastItsDeadlineIs504) {
  ServeOptions options;
  options.request_timeout_seconds = 0.3;
  start(options, 50ms);
  const auto res = post("/v1/completions", completion(1000));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 504);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "timeout");
  EXPECT_TRUE(eventually([&] { return engine_->cancelled_at_tokens >= 0; }));
}

TEST_F(ServerTest, StoppingEndsARunningRequestWithinATokenAnd503) {
  start({}, 50ms);
  int status = 0;
  std::string body;
  std::thread a([&] {
    const auto res = post("/v1/completions", completion(1000));
    ASSERT_TRUE(res);
    status = res->status;
    body = res->body;
  });
  ASSERT_TRUE(eventually([&] { return engine_->emitted >= 2; }));
  const auto t0 = SteadyClock::now();
  server_->stop();
  EXPECT_LT(SteadyClock::now() - t0, 2s);
  a.join();
  EXPECT_EQ(status, 503);
  EXPECT_EQ(json::parse(body)["error"]["code"], "shutting_down");
}

TEST_F(ServerTest, ChatWithoutATemplateAndUnknownUrlsAreOpenAiErrors) {
  start();
  const auto chat = post("/v1/chat/completions",
                         {{"model", "fake"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  EXPECT_EQ(chat->status, 400);
  EXPECT_EQ(json::parse(chat->body)["error"]["code"], "no_chat_template");
  const auto nowhere = client()->Get("/v1/nowhere");
  EXPECT_EQ(nowhere->status, 404);
  EXPECT_EQ(json::parse(nowhere->body)["error"]["type"], "invalid_request_error");
  const auto bad = client()->Post("/v1/completions", "{oops", "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(json::parse(bad->body)["error"]["code"], "invalid_json");
  EXPECT_EQ(metric(R"(ra_requests_total{endpoint="completions",outcome="invalid"})"), 1);
  // The fake engine's contexts: it says nothing against them, but its max is 512 tokens.
  const auto huge = post("/v1/completions", {{"model", "fake"}, {"prompt", std::string(600, 'x')}});
  EXPECT_EQ(huge->status, 400);
  EXPECT_EQ(json::parse(huge->body)["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(post("/v1/completions", completion(1))->status, 200);  // nothing else disturbed
}

}  // namespace
}  // namespace ra::serve
