#pragma once
// The response bodies of the OpenAI endpoints (non-streaming; sse.h has the streamed chunks).
// Besides OpenAI's fields, a response carries "timings" (milliseconds: queue, prefill, time to first
// token, decode; prompt tokens prefilled), which clients ignore and benchmarks read.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "gpu_worker/serve/engine.h"

namespace ra::serve {

struct ResponseMeta {
  std::string id;       // "cmpl-...", "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused from a prebuilt context (prompt_tokens_details)
};

struct Timings {
  double queue_ms = 0.0;        // admitted -> started
  double prefill_ms = 0.0;
  double first_token_ms = 0.0;  // admitted -> first token (0 when none)
  double decode_ms = 0.0;
  int64_t prefilled_tokens = 0;  // prompt tokens computed (prompt_tokens - cached_tokens)
};

// "stop", "length" (a cancelled request has no response).
std::string_view finish_reason_text(FinishReason reason);

nlohmann::ordered_json usage_json(const Usage& usage);
nlohmann::ordered_json timings_json(const Timings& timings);
// object "text_completion".
nlohmann::ordered_json completion_body(const ResponseMeta& meta, std::string_view text, FinishReason finish,
                                       const Usage& usage, const Timings& timings);
// object "chat.completion", the reply as the assistant's message.
nlohmann::ordered_json chat_body(const ResponseMeta& meta, std::string_view text, FinishReason finish,
                                 const Usage& usage, const Timings& timings);
// GET /v1/models: the one model served.
nlohmann::ordered_json models_body(const std::string& model, int64_t created, int64_t max_positions);

// Compact JSON; bytes that are not UTF-8 (a model may emit them) become U+FFFD.
std::string dump_json(const nlohmann::ordered_json& value);

}  // namespace ra::serve
