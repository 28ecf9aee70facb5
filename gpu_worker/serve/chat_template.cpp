#include "gpu_worker/serve/chat_template.h"

#include <chrono>
#include <ctime>
#include <fstream>

#include "common/error.h"
#include "gpu_worker/serve/api_error.h"

namespace ra::serve {
namespace {

using json = nlohmann::json;

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// Python's str.strip() on ASCII whitespace (what the templates' `trim` / `.strip()` do to our messages).
std::string_view strip(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\v\f";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

// A special token as tokenizer_config.json gives it: a string or an AddedToken object {"content": ...}.
std::string token_text(const json& config, const char* key, const std::string& fallback) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"];
  return fallback;
}

std::string today() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%d %b %Y", &tm);
  return buf;
}

void render_llama3(const ChatTemplate& t, std::span<const ChatMessage> messages, std::string& out) {
  out += t.bos_token;
  size_t first = 0;
  if (t.layout == ChatLayout::kLlama31) {
    const bool has_system = !messages.empty() && messages[0].role == "system";
    out += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ";
    out += t.date;
    out += "\n\n";
    if (has_system) out += strip(messages[0].content);
    out += t.end_of_turn;
    first = has_system ? 1 : 0;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system" && i != 0) throw invalid_request("a system message must be the first message", "messages");
    out += "<|start_header_id|>";
    out += m.role;
    out += "<|end_header_id|>\n\n";
    out += strip(m.content);
    out += t.end_of_turn;
  }
}

void render_llama2(const ChatTemplate& t, std::span<const ChatMessage> messages, std::string& out) {
  const bool has_system = !messages.empty() && messages[0].role == "system";
  const std::span<const ChatMessage> turns = messages.subspan(has_system ? 1 : 0);
  for (size_t i = 0; i < turns.size(); ++i) {
    const ChatMessage& m = turns[i];
    if (m.role == "system") throw invalid_request("a system message must be the first message", "messages");
    if ((m.role == "user") != (i % 2 == 0)) {
      throw invalid_request(
          "this model's chat template (Llama-2) needs the roles to alternate user/assistant/user/... after an "
          "optional system message",
          "messages");
    }
    std::string content;
    if (i == 0 && has_system) {
      content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n";
    }
    content += m.content;
    if (m.role == "user") {
      out += t.bos_token;
      out += "[INST] ";
      out += strip(content);
      out += " [/INST]";
    } else {
      out += " ";
      out += strip(content);
      out += " ";
      out += t.eos_token;
    }
  }
}

}  // namespace

std::string_view name(ChatLayout layout) {
  switch (layout) {
    case ChatLayout::kLlama3: return "llama-3";
    case ChatLayout::kLlama31: return "llama-3.1";
    case ChatLayout::kLlama2: return "llama-2";
  }
  return "?";
}

ChatSupport detect_chat_template(const json& config, const std::string& source) {
  ChatSupport out;
  const auto it = config.find("chat_template");
  std::string text;
  if (it != config.end() && it->is_string()) {
    text = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {
    for (const json& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        text = entry["template"];
      }
    }
  }
  if (text.empty()) {
    out.unavailable = fmt::format("{} has no chat_template", source);
    return out;
  }
  ChatTemplate t;
  if (contains(text, "<|start_header_id|>") && contains(text, "<|end_header_id|>") && contains(text, "<|eot_id|>")) {
    t.layout = contains(text, "Cutting Knowledge Date") ? ChatLayout::kLlama31 : ChatLayout::kLlama3;
    t.bos_token = token_text(config, "bos_token", "<|begin_of_text|>");
    t.eos_token = token_text(config, "eos_token", "<|eot_id|>");
    t.end_of_turn = "<|eot_id|>";
    t.date = contains(text, "strftime_now") ? today() : "26 Jul 2024";
  } else if (contains(text, "[INST]") && contains(text, "[/INST]")) {
    t.layout = ChatLayout::kLlama2;
    t.bos_token = token_text(config, "bos_token", "<s>");
    t.eos_token = token_text(config, "eos_token", "</s>");
    t.end_of_turn = t.eos_token;
  } else {
    out.unavailable = fmt::format(
        "the chat_template of {} is not a layout this server writes (Llama-3, Llama-3.1 or Llama-2)", source);
    return out;
  }
  out.chat = std::move(t);
  return out;
}

ChatSupport load_chat_template(const std::filesystem::path& dir) {
  const std::filesystem::path file = dir / "tokenizer_config.json";
  if (!std::filesystem::is_regular_file(file)) {
    ChatSupport out;
    out.unavailable = fmt::format("no {} (it names the chat template)", file.string());
    return out;
  }
  std::ifstream in(file, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open it", file.string());
  json config;
  try {
    config = json::parse(in);
  } catch (const json::exception& e) {
    raise("{}: not valid JSON: {}", file.string(), e.what());
  }
  RA_REQUIRE(config.is_object(), "{}: expected a JSON object", file.string());
  return detect_chat_template(config, file.string());
}

std::string render_chat(const ChatTemplate& chat, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  if (chat.layout == ChatLayout::kLlama2) {
    render_llama2(chat, messages, out);
  } else {
    render_llama3(chat, messages, out);
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  }
  return out;
}

}  // namespace ra::serve
