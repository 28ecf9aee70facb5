#pragma once
// The request bodies of the OpenAI endpoints this server implements, parsed and checked. Every problem
// is an ApiError (400) naming the field as `param`, with code invalid_type (wrong JSON type),
// invalid_value (out of range, unknown value), missing_required_parameter, or unsupported_value (a
// feature this server does not do: n > 1, logprobs, echo, penalties, logit_bias, tools, ...). Fields
// this server neither uses nor needs (user, metadata, ...) are ignored, as other OpenAI-compatible
// servers do; a null field counts as absent.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/serve/chat_template.h"

namespace ra::serve {

// What both generation endpoints share.
struct GenerationParams {
  std::string model;
  std::optional<int64_t> max_tokens;  // >= 1; chat: max_completion_tokens, or its old name max_tokens
  float temperature = 1.0f;           // [0, 2]; 0 = greedy
  float top_p = 1.0f;                 // (0, 1]
  std::optional<uint64_t> seed;       // any 64-bit integer; absent = a fresh one per request
  std::vector<std::string> stop;      // at most 4, none empty
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage: a last chunk with the usage
  std::string context;                // ours: the id of a prebuilt context the prompt continues
};

// A completion prompt: text, or token ids.
struct PromptInput {
  std::string text;
  std::vector<int32_t> ids;
  bool is_ids = false;
};

struct CompletionRequest {
  GenerationParams params;
  PromptInput prompt;
};

struct ChatRequest {
  GenerationParams params;
  std::vector<ChatMessage> messages;  // roles system (also from "developer"), user, assistant
};

// POST /v1/contexts: a document as a prompt, or the first messages of a conversation.
struct ContextRequest {
  std::string model;  // optional here
  std::optional<PromptInput> prompt;
  std::vector<ChatMessage> messages;  // used when prompt is absent
};

// The body as JSON: an object, else 400 (code invalid_json) with the parser's message.
nlohmann::json parse_json_body(std::string_view body);

CompletionRequest parse_completion_request(const nlohmann::json& body);
ChatRequest parse_chat_request(const nlohmann::json& body);
ContextRequest parse_context_request(const nlohmann::json& body);

}  // namespace ra::serve
