#include "gpu_worker/serve/openai_response.h"

#include <cmath>

namespace ra::serve {
namespace {

using ojson = nlohmann::ordered_json;

double round_ms(double ms) { return std::round(ms * 1000.0) / 1000.0; }

ojson head(const ResponseMeta& meta, const char* object) {
  ojson out;
  out["id"] = meta.id;
  out["object"] = object;
  out["created"] = meta.created;
  out["model"] = meta.model;
  return out;
}

}  // namespace

std::string_view finish_reason_text(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "stop";
}

ojson usage_json(const Usage& u) {
  ojson out;
  out["prompt_tokens"] = u.prompt_tokens;
  out["completion_tokens"] = u.completion_tokens;
  out["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  out["prompt_tokens_details"] = ojson{{"cached_tokens", u.cached_tokens}};
  return out;
}

ojson timings_json(const Timings& t) {
  ojson out;
  out["queue_ms"] = round_ms(t.queue_ms);
  out["prefill_ms"] = round_ms(t.prefill_ms);
  out["first_token_ms"] = round_ms(t.first_token_ms);
  out["decode_ms"] = round_ms(t.decode_ms);
  out["prefilled_tokens"] = t.prefilled_tokens;
  return out;
}

namespace {

// The body of a whole (not streamed) response: `object`, one choice whose text lies under `text_key`
// (`text` itself, or {role, content} for chat), its finish reason, the usage and our timings.
ojson body(const ResponseMeta& meta, const char* object, const char* text_key, ojson text, FinishReason finish,
           const Usage& usage, const Timings& timings) {
  ojson out = head(meta, object);
  ojson choice;
  choice["index"] = 0;
  choice[text_key] = std::move(text);
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason_text(finish);
  out["choices"] = ojson::array({std::move(choice)});
  out["usage"] = usage_json(usage);
  out["timings"] = timings_json(timings);
  return out;
}

}  // namespace

ojson completion_body(const ResponseMeta& meta, std::string_view text, FinishReason finish, const Usage& usage,
                      const Timings& timings) {
  return body(meta, "text_completion", "text", text, finish, usage, timings);
}

ojson chat_body(const ResponseMeta& meta, std::string_view text, FinishReason finish, const Usage& usage,
                const Timings& timings) {
  return body(meta, "chat.completion", "message", ojson{{"role", "assistant"}, {"content", text}}, finish, usage,
              timings);
}

ojson models_body(const std::string& model, int64_t created, int64_t max_positions) {
  ojson m;
  m["id"] = model;
  m["object"] = "model";
  m["created"] = created;
  m["owned_by"] = "retrieval-attention";
  m["max_model_len"] = max_positions;
  ojson out;
  out["object"] = "list";
  out["data"] = ojson::array({std::move(m)});
  return out;
}

std::string dump_json(const ojson& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, ojson::error_handler_t::replace);
}

}  // namespace ra::serve
