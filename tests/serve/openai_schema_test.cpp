// The OpenAI request schemas (every field's type and range, unsupported features refused, unknown
// fields ignored), the response bodies, the error shape, and the SSE framing.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/openai_request.h"
#include "gpu_worker/serve/openai_response.h"
#include "gpu_worker/serve/sse.h"

namespace ra::serve {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

// The ApiError a parse throws, or a failure.
ApiError error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an ApiError";
  return invalid_request("none");
}

json completion(json extra = json::object()) {
  json body = {{"model", "m"}, {"prompt", "hello"}};
  body.update(extra);
  return body;
}

json chat(json extra = json::object()) {
  json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  body.update(extra);
  return body;
}

TEST(OpenAiRequest, CompletionDefaultsAndFields) {
  const CompletionRequest d = parse_completion_request(completion());
  EXPECT_EQ(d.params.model, "m");
  EXPECT_EQ(d.prompt.text, "hello");
  EXPECT_FALSE(d.prompt.is_ids);
  EXPECT_FALSE(d.params.max_tokens);
  EXPECT_EQ(d.params.temperature, 1.0f);
  EXPECT_EQ(d.params.top_p, 1.0f);
  EXPECT_FALSE(d.params.seed);
  EXPECT_FALSE(d.params.stream);

  const CompletionRequest r = parse_completion_request(completion(
      {{"max_tokens", 7}, {"temperature", 0}, {"top_p", 0.5}, {"seed", -1}, {"stop", {"a", "bc"}}, {"stream", true},
       {"stream_options", {{"include_usage", true}}}, {"context", "ctx-1"}, {"user", "ignored"}, {"n", 1},
       {"logprobs", nullptr}, {"echo", false}, {"presence_penalty", 0}, {"unknown_field", {1, 2}}}));
  EXPECT_EQ(r.params.max_tokens, 7);
  EXPECT_EQ(r.params.temperature, 0.0f);
  EXPECT_EQ(r.params.top_p, 0.5f);
  EXPECT_EQ(r.params.seed, ~uint64_t{0});
  EXPECT_EQ(r.params.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.params.stream);
  EXPECT_TRUE(r.params.include_usage);
  EXPECT_EQ(r.params.context, "ctx-1");
  EXPECT_EQ(parse_completion_request(completion({{"stop", "x"}})).params.stop, std::vector<std::string>{"x"});
}

TEST(OpenAiRequest, PromptForms) {
  EXPECT_EQ(parse_completion_request(completion({{"prompt", {"one"}}})).prompt.text, "one");
  const PromptInput ids = parse_completion_request(completion({{"prompt", {1, 2, 3}}})).prompt;
  EXPECT_TRUE(ids.is_ids);
  EXPECT_EQ(ids.ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(parse_completion_request(completion({{"prompt", {{4, 5}}}})).prompt.ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(error_of([] { parse_completion_request(completion({{"prompt", {"a", "b"}}})); }).code(),
            "unsupported_value");
  EXPECT_EQ(error_of([] { parse_completion_request(completion({{"prompt", json::array()}})); }).param(), "prompt");
  EXPECT_EQ(error_of([] { parse_completion_request(completion({{"prompt", {1, -2}}})); }).code(), "invalid_value");
  EXPECT_EQ(error_of([] { parse_completion_request(completion({{"prompt", 5}})); }).code(), "invalid_type");
  EXPECT_EQ(error_of([] { parse_completion_request(json{{"model", "m"}}); }).code(), "missing_required_parameter");
}

TEST(OpenAiRequest, WrongTypesAreInvalidType400sNamingTheField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"temperature", "hot"}}, "temperature"}, {{{"top_p", true}}, "top_p"},
      {{{"max_tokens", 1.5}}, "max_tokens"},     {{{"max_tokens", "8"}}, "max_tokens"},
      {{{"seed", 1.5}}, "seed"},                 {{{"stop", 3}}, "stop"},
      {{{"stop", {"a", 1}}}, "stop"},            {{{"stream", "yes"}}, "stream"},
      {{{"model", 3}}, "model"},                 {{{"stream_options", 1}}, "stream_options"},
      {{{"context", 5}}, "context"},             {{{"n", "1"}}, "n"}};
  for (const auto& [extra, field] : cases) {
    const json request = completion(extra);  // clang 14 cannot capture a structured binding in a lambda
    const ApiError e = error_of([&] { parse_completion_request(request); });
    EXPECT_EQ(e.status(), 400) << extra.dump();
    EXPECT_EQ(e.type(), "invalid_request_error");
    EXPECT_EQ(e.param(), field) << extra.dump();
    EXPECT_EQ(e.code(), "invalid_type") << extra.dump();
  }
}

TEST(OpenAiRequest, OutOfRangeValuesAreInvalidValue400s) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"temperature", 2.5}}, "temperature"}, {{{"temperature", -0.1}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},               {{{"top_p", 1.01}}, "top_p"},
      {{{"max_tokens", 0}}, "max_tokens"},     {{{"max_tokens", -3}}, "max_tokens"},
      {{{"stop", {""}}}, "stop"},              {{{"stop", {"a", "b", "c", "d", "e"}}}, "stop"},
      {{{"max_tokens", 1e20}}, "max_tokens"}};
  for (const auto& [extra, field] : cases) {
    const json request = completion(extra);  // clang 14 cannot capture a structured binding in a lambda
    const ApiError e = error_of([&] { parse_completion_request(request); });
    EXPECT_EQ(e.status(), 400) << extra.dump();
    EXPECT_EQ(e.param(), field) << extra.dump();
  }
  EXPECT_EQ(error_of([] { parse_completion_request(completion({{"max_tokens", 99999999999}})); }).code(),
            "invalid_value");
}

TEST(OpenAiRequest, FeaturesItDoesNotHaveAreRefusedNotIgnored) {
  for (const json& extra : {json{{"n", 2}}, json{{"best_of", 3}}, json{{"echo", true}}, json{{"logprobs", 2}},
                            json{{"suffix", "x"}}, json{{"presence_penalty", 0.5}}, json{{"frequency_penalty", -1}},
                            json{{"logit_bias", {{"5", 10}}}}}) {
    const ApiError e = error_of([&] { parse_completion_request(completion(extra)); });
    EXPECT_EQ(e.code(), "unsupported_value") << extra.dump();
    EXPECT_EQ(e.param(), extra.begin().key());
  }
  for (const json& extra : {json{{"tools", {{{"type", "function"}}}}}, json{{"tool_choice", "auto"}},
                            json{{"logprobs", true}}, json{{"response_format", {{"type", "json_object"}}}}}) {
    EXPECT_EQ(error_of([&] { parse_chat_request(chat(extra)); }).code(), "unsupported_value") << extra.dump();
  }
  EXPECT_NO_THROW(parse_chat_request(chat({{"tools", json::array()}, {"tool_choice", "none"},
                                           {"response_format", {{"type", "text"}}}})));
}

TEST(OpenAiRequest, ChatMessages) {
  const ChatRequest r = parse_chat_request(chat(
      {{"messages",
        {{{"role", "developer"}, {"content", "be brief"}},
         {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
         {{"role", "assistant"}, {"content", "ok"}}}},
       {"max_completion_tokens", 5},
       {"max_tokens", 9}}));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "a\nb");
  EXPECT_EQ(r.params.max_tokens, 5);  // max_completion_tokens wins over its old name
  EXPECT_EQ(parse_chat_request(chat({{"max_tokens", 9}})).params.max_tokens, 9);

  EXPECT_EQ(error_of([] { parse_chat_request(chat({{"messages", {{{"role", "wizard"}, {"content", "x"}}}}})); }).param(),
            "messages[0].role");
  EXPECT_EQ(error_of([] { parse_chat_request(chat({{"messages", {{{"role", "tool"}, {"content", "x"}}}}})); }).code(),
            "unsupported_value");
  EXPECT_EQ(error_of([] { parse_chat_request(chat({{"messages", {{{"role", "user"}}}}})); }).param(),
            "messages[0].content");
  EXPECT_EQ(error_of([] {
              parse_chat_request(chat({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}));
            }).code(),
            "unsupported_value");
  EXPECT_EQ(error_of([] { parse_chat_request(chat({{"messages", json::array()}})); }).param(), "messages");
  EXPECT_EQ(error_of([] { parse_chat_request(chat({{"messages", "hi"}})); }).code(), "invalid_type");
  EXPECT_EQ(error_of([] { parse_chat_request(json{{"model", "m"}}); }).code(), "missing_required_parameter");
}

TEST(OpenAiRequest, ContextRequests) {
  EXPECT_EQ(parse_context_request(json{{"prompt", "doc"}}).prompt->text, "doc");
  const ContextRequest m = parse_context_request(json{{"messages", {{{"role", "system"}, {"content", "doc"}}}}});
  EXPECT_FALSE(m.prompt);
  EXPECT_EQ(m.messages.size(), 1u);
  EXPECT_EQ(error_of([] { parse_context_request(json::object()); }).code(), "missing_required_parameter");
}

TEST(OpenAiRequest, BodiesThatAreNotJsonObjects) {
  const ApiError e = error_of([] { parse_json_body("{\"model\": "); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "invalid_json");
  EXPECT_THAT(e.what(), HasSubstr("not valid JSON"));
  EXPECT_EQ(error_of([] { parse_json_body("[1, 2]"); }).code(), "invalid_json");
  EXPECT_EQ(error_of([] { parse_json_body(""); }).code(), "invalid_json");
  // A number too large for a double: nlohmann's out_of_range, a 400 too (found by openai_request_fuzz's
  // sibling safetensors_fuzz: every JSON reader caught only parse_error).
  EXPECT_EQ(error_of([] { parse_json_body("{\"max_tokens\": 1e99999}"); }).code(), "invalid_json");
  EXPECT_TRUE(parse_json_body("{\"a\": 1}").is_object());
}

TEST(ApiErrorShape, IsOpenAisErrorObject) {
  const json body = json::parse(invalid_request("bad", "temperature", "invalid_value").body().dump());
  EXPECT_EQ(body, (json{{"error",
                         {{"message", "bad"}, {"type", "invalid_request_error"}, {"param", "temperature"},
                          {"code", "invalid_value"}}}}));
  const json bare = json::parse(ApiError(404, "invalid_request_error", "gone").body().dump());
  EXPECT_TRUE(bare["error"]["param"].is_null());
  EXPECT_TRUE(bare["error"]["code"].is_null());
  EXPECT_EQ(server_busy("full").status(), 429);
  EXPECT_EQ(unavailable("down").status(), 503);
  EXPECT_EQ(not_supported("no").status(), 501);
}

TEST(OpenAiResponse, BodiesHaveOpenAisFieldsAndUsage) {
  const ResponseMeta meta{"cmpl-1", 1700000000, "m"};
  const Usage usage{10, 3, 4};
  const Timings timings{1.0, 2.0, 3.0, 4.0, 6};
  const json c = json::parse(dump_json(completion_body(meta, "abc", FinishReason::kLength, usage, timings)));
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["id"], "cmpl-1");
  EXPECT_EQ(c["choices"][0]["text"], "abc");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c["usage"], (json{{"prompt_tokens", 10}, {"completion_tokens", 3}, {"total_tokens", 13},
                              {"prompt_tokens_details", {{"cached_tokens", 4}}}}));
  EXPECT_EQ(c["timings"]["prefilled_tokens"], 6);
  const json ch = json::parse(dump_json(chat_body(meta, "hi", FinishReason::kStop, usage, timings)));
  EXPECT_EQ(ch["object"], "chat.completion");
  EXPECT_EQ(ch["choices"][0]["message"], (json{{"role", "assistant"}, {"content", "hi"}}));
  EXPECT_EQ(ch["choices"][0]["finish_reason"], "stop");
  const json models = json::parse(dump_json(models_body("m", 5, 4096)));
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "m");
  EXPECT_EQ(models["data"][0]["object"], "model");
}

TEST(OpenAiResponse, TextThatIsNotUtf8IsReplacedNotThrown) {
  const std::string bad = "a\xff\xfe" "b";
  const json c = json::parse(dump_json(completion_body({"i", 1, "m"}, bad, FinishReason::kStop, {}, {})));
  EXPECT_EQ(c["choices"][0]["text"], "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
}

// Splits an SSE stream into its events' data (each "data: X\n\n").
std::vector<std::string> events(const std::string& stream) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < stream.size()) {
    EXPECT_EQ(stream.compare(at, 6, "data: "), 0) << stream.substr(at);
    const size_t end = stream.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    out.push_back(stream.substr(at + 6, end - at - 6));
    at = end + 2;
  }
  return out;
}

TEST(Sse, CompletionStreamIsChunksThenFinishThenUsageThenDone) {
  const SseWriter w(StreamKind::kCompletion, {"cmpl-7", 42, "m"});
  std::string out;
  w.start(out);
  EXPECT_TRUE(out.empty());
  w.text("He said \"hi\"\n", out);
  w.text("\xE2\x82\xAC", out);  // a whole euro sign
  w.finish(FinishReason::kStop, out);
  w.usage({5, 2, 0}, {}, out);
  w.done(out);
  const std::vector<std::string> e = events(out);
  ASSERT_EQ(e.size(), 5u);
  const json first = json::parse(e[0]);
  EXPECT_EQ(first, (json{{"id", "cmpl-7"},
                         {"object", "text_completion"},
                         {"created", 42},
                         {"model", "m"},
                         {"choices", {{{"index", 0}, {"text", "He said \"hi\"\n"}, {"logprobs", nullptr},
                                       {"finish_reason", nullptr}}}}}));
  EXPECT_EQ(json::parse(e[1])["choices"][0]["text"], "\xE2\x82\xAC");
  EXPECT_EQ(json::parse(e[2])["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(json::parse(e[2])["choices"][0]["text"], "");
  const json usage = json::parse(e[3]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
  EXPECT_EQ(e[4], "[DONE]");
  EXPECT_EQ(out.substr(out.size() - kSseDone.size()), kSseDone);
}

TEST(Sse, ChatStreamStartsWithTheRoleAndUsesDeltas) {
  const SseWriter w(StreamKind::kChat, {"chatcmpl-1", 1, "m"});
  std::string out;
  w.start(out);
  w.text("ok", out);
  w.finish(FinishReason::kLength, out);
  w.done(out);
  const std::vector<std::string> e = events(out);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(json::parse(e[0])["object"], "chat.completion.chunk");
  EXPECT_EQ(json::parse(e[0])["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_EQ(json::parse(e[1])["choices"][0]["delta"], (json{{"content", "ok"}}));
  EXPECT_EQ(json::parse(e[2])["choices"][0]["delta"], json::object());
  EXPECT_EQ(json::parse(e[2])["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(e[3], "[DONE]");
}

TEST(Sse, AnErrorIsAnEventInOpenAisErrorShape) {
  const SseWriter w(StreamKind::kCompletion, {"cmpl-1", 1, "m"});
  std::string out;
  w.error(unavailable("retriever 2 is down", "engine_failed"), out);
  w.done(out);
  const std::vector<std::string> e = events(out);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(json::parse(e[0])["error"]["message"], "retriever 2 is down");
  EXPECT_EQ(json::parse(e[0])["error"]["code"], "engine_failed");
}

TEST(Sse, AModelNameLikeThePlaceholderDoesNotConfuseTheTemplate) {
  const SseWriter w(StreamKind::kCompletion, {"x", 1, "\x01ra-text\x01"});
  std::string out;
  w.text("t", out);
  const json chunk = json::parse(events(out).at(0));
  EXPECT_EQ(chunk["model"], "\x01ra-text\x01");
  EXPECT_EQ(chunk["choices"][0]["text"], "t");
}

}  // namespace
}  // namespace ra::serve
