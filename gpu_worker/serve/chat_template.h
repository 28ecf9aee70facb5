#pragma once
// Chat prompts in the checkpoint's own layout. The layout is recognised from tokenizer_config.json's
// `chat_template` (a Jinja template, which we do not run) and written out here exactly as that template
// renders it:
//   Llama-3:   <|begin_of_text|> then per message <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
//              (content trimmed), then <|start_header_id|>assistant<|end_header_id|>\n\n to open the reply.
//   Llama-3.1: the same, with the template's system block always first:
//              "Cutting Knowledge Date: December 2023\nToday Date: DATE\n\n" + the system message (DATE:
//              "26 Jul 2024", or today for templates that call strftime_now, as 3.2's do).
//   Llama-2:   <s>[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s><s>[INST] USER [/INST]
//              (roles must alternate user/assistant; the system message joins the first user turn).
// The rendered text is then tokenized like any text: the special tokens in it are the tokenizer's
// added tokens, and BOS is the template's (nothing is prepended).

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ra::serve {

enum class ChatLayout { kLlama3, kLlama31, kLlama2 };
std::string_view name(ChatLayout layout);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatTemplate {
  ChatLayout layout = ChatLayout::kLlama3;
  std::string bos_token;    // the text the template writes for BOS
  std::string eos_token;    // Llama-2 closes an assistant turn with it
  std::string end_of_turn;  // the token that ends a turn, which ends generation too ("<|eot_id|>"; Llama-2: eos)
  std::string date;         // Llama-3.1: the "Today Date" line's date
};

// What a checkpoint says about chat: a known layout, or why there is none.
struct ChatSupport {
  std::optional<ChatTemplate> chat;
  std::string unavailable;  // when !chat: e.g. "tokenizer_config.json has no chat_template"
};

// From a parsed tokenizer_config.json (`source` names it in messages). `chat_template` may be a string
// or a list of {name, template} (the one named "default" is used).
ChatSupport detect_chat_template(const nlohmann::json& tokenizer_config, const std::string& source);
// From dir/tokenizer_config.json; a missing file is "unavailable", an unreadable one a ra::Error.
ChatSupport load_chat_template(const std::filesystem::path& dir);

// The prompt text for `messages` (roles as above), with the assistant's turn opened when
// `add_generation_prompt`. Throws ApiError (400, param "messages") for a conversation the layout cannot
// write: Llama-2 turns that do not alternate, a system message that is not the first.
std::string render_chat(const ChatTemplate& chat, std::span<const ChatMessage> messages, bool add_generation_prompt);

}  // namespace ra::serve
