// Chat layouts: recognised from tokenizer_config.json, and written exactly as the checkpoints' Jinja
// templates render them. The expected strings were rendered by jinja2 3.1 with Hugging Face's settings
// (trim_blocks, lstrip_blocks) from Meta-Llama-3-8B-Instruct's, Llama-3.1-8B-Instruct's (no tools) and
// Llama-2-7b-chat-hf's templates.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gpu_worker/model/hf_tokenizer.h"
#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/chat_template.h"
#include "gpu_worker/serve/served_model.h"
#include "tests/serve/tiny_chat_model.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_hf_model.h"

namespace ra::serve {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using Messages = std::vector<ChatMessage>;

const Messages kOneUser = {{"user", "  Hello there \n"}};
const Messages kSystemUser = {{"system", "You are terse.\n"}, {"user", "Hi"}};
const Messages kMulti = {{"system", "S"}, {"user", "Q1"}, {"assistant", " A1 "}, {"user", "Q2"}};

ChatTemplate detect(const std::string& chat_template, json extra = json::object()) {
  json config = {{"chat_template", chat_template}};
  config.update(extra);
  const ChatSupport s = detect_chat_template(config, "tokenizer_config.json");
  EXPECT_TRUE(s.chat) << s.unavailable;
  return s.chat.value_or(ChatTemplate{});
}

TEST(ChatTemplate, Llama3LayoutAsTheTemplateRendersIt) {
  const ChatTemplate t = detect(test::kLlama3ChatTemplate, {{"bos_token", "<|begin_of_text|>"}});
  EXPECT_EQ(t.layout, ChatLayout::kLlama3);
  EXPECT_EQ(render_chat(t, kOneUser, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|><|start_header_id|>"
            "assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(t, kOneUser, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>");
  EXPECT_EQ(render_chat(t, kSystemUser, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>"
            "user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(t, kMulti, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_"
            "header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31LayoutAlwaysWritesItsSystemBlock) {
  const std::string tpl = "{{- bos_token }}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting "
                          "Knowledge Date: December 2023\\n\" }}{{- \"Today Date: \" + date_string }} <|eot_id|>";
  const ChatTemplate t = detect(tpl, {{"bos_token", {{"content", "<|begin_of_text|>"}, {"__type", "AddedToken"}}}});
  EXPECT_EQ(t.layout, ChatLayout::kLlama31);
  EXPECT_EQ(t.bos_token, "<|begin_of_text|>");
  EXPECT_EQ(render_chat(t, kOneUser, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|><|"
            "start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(t, kSystemUser, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_"
            "id|>");
  EXPECT_EQ(render_chat(t, kMulti, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_"
            "header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|"
            "eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  // 3.2's templates take today's date.
  EXPECT_NE(detect(tpl + "{{ strftime_now('%d %b %Y') }}").date, "26 Jul 2024");
}

TEST(ChatTemplate, Llama2LayoutAsTheTemplateRendersIt) {
  const ChatTemplate t = detect(test::kLlama2ChatTemplate, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  EXPECT_EQ(t.layout, ChatLayout::kLlama2);
  EXPECT_EQ(render_chat(t, kOneUser, true), "<s>[INST] Hello there [/INST]");
  EXPECT_EQ(render_chat(t, kSystemUser, true), "<s>[INST] <<SYS>>\nYou are terse.\n\n<</SYS>>\n\nHi [/INST]");
  EXPECT_EQ(render_chat(t, kMulti, false), "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST]");
}

TEST(ChatTemplate, ConversationsALayoutCannotWriteAre400s) {
  const ChatTemplate l2 = detect(test::kLlama2ChatTemplate);
  for (const Messages& m : {Messages{{"assistant", "a"}}, Messages{{"user", "a"}, {"user", "b"}},
                            Messages{{"user", "a"}, {"system", "s"}}}) {
    try {
      render_chat(l2, m, true);
      ADD_FAILURE() << "expected an ApiError";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), "messages");
    }
  }
  EXPECT_THROW(render_chat(detect(test::kLlama3ChatTemplate), Messages{{"user", "a"}, {"system", "s"}}, true),
               ApiError);
}

TEST(ChatTemplate, UnknownOrMissingTemplatesSayWhy) {
  EXPECT_THAT(detect_chat_template(json::object(), "cfg.json").unavailable, HasSubstr("no chat_template"));
  const ChatSupport chatml =
      detect_chat_template(json{{"chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"}}, "c");
  EXPECT_FALSE(chatml.chat);
  EXPECT_THAT(chatml.unavailable, HasSubstr("not a layout this server writes"));
  // A list of named templates: the default one.
  const ChatSupport listed = detect_chat_template(
      json{{"chat_template", {{{"name", "tool_use"}, {"template", "x"}},
                              {{"name", "default"}, {"template", test::kLlama3ChatTemplate}}}}},
      "c");
  ASSERT_TRUE(listed.chat);
  EXPECT_EQ(listed.chat->layout, ChatLayout::kLlama3);
}

TEST(ChatTemplate, LoadsFromTheCheckpointFolder) {
  test::TempDir dir;
  EXPECT_THAT(load_chat_template(dir.path()).unavailable, HasSubstr("tokenizer_config.json"));
  test::write_text(dir.path() / "tokenizer_config.json", "{not json");
  EXPECT_THROW(load_chat_template(dir.path()), Error);
  test::write_tiny_chat_model(dir.path());
  const ChatSupport s = load_chat_template(dir.path());
  ASSERT_TRUE(s.chat);
  EXPECT_EQ(s.chat->layout, ChatLayout::kLlama3);
}

TEST(ChatTemplate, RenderedSpecialsTokenizeToTheirIds) {
  test::TempDir dir;
  test::write_tiny_chat_model(dir.path());
  const HfTokenizer tok(dir.path() / "tokenizer.json");
  const ChatTemplate t = *load_chat_template(dir.path()).chat;
  const std::vector<int32_t> ids = tok.encode(render_chat(t, Messages{{"user", "Hi"}}, true));
  const std::vector<int32_t> expected = {test::kChatBos, test::kChatStartHeader, 'u', 's', 'e', 'r',
                                         test::kChatEndHeader, '\n', '\n', 'H', 'i', test::kChatEot,
                                         test::kChatStartHeader, 'a', 's', 's', 'i', 's', 't', 'a', 'n', 't',
                                         test::kChatEndHeader, '\n', '\n'};
  EXPECT_EQ(ids, expected);
}

TEST(ServedModelRules, BosStopTokensAndTheTemplatesEndOfTurn) {
  test::TempDir dir;
  test::write_tiny_chat_model(dir.path());
  ModelConfig config;
  config.bos_token_id = 256;
  config.eos_token_id = 257;
  ServedModel m;
  m.tokenizer = load_hf_tokenizer(dir.path() / "tokenizer.json", 261);
  m.chat = load_chat_template(dir.path());
  derive_token_rules(m, config);
  EXPECT_EQ(m.bos_id, test::kChatBos);
  EXPECT_THAT(m.stop_tokens, ::testing::UnorderedElementsAre(test::kChatEnd, test::kChatBos, test::kChatEot));
  EXPECT_THAT(m.chat_stop_tokens, ::testing::Contains(test::kChatEot));
  ASSERT_TRUE(m.chat.chat);
  EXPECT_EQ(encode_prompt(m, "ab"), (std::vector<int32_t>{test::kChatBos, 'a', 'b'}));

  // A tokenizer without the template's special tokens would spell them out: no chat then.
  ServedModel bytes;
  bytes.tokenizer = make_byte_tokenizer(261);
  bytes.chat = load_chat_template(dir.path());
  derive_token_rules(bytes, config);
  EXPECT_FALSE(bytes.chat.chat);
  EXPECT_THAT(bytes.chat.unavailable, HasSubstr("is not a token of the tokenizer"));
  EXPECT_EQ(bytes.bos_id, 256);
}

}  // namespace
}  // namespace ra::serve
