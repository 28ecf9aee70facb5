#pragma once
// Streamed responses as server-sent events in OpenAI's shape: each event is "data: <json>\n\n", and the
// stream ends with "data: [DONE]\n\n".
//   completions: {"id","object":"text_completion","created","model",
//                 "choices":[{"index":0,"text":"...","logprobs":null,"finish_reason":null}]}
//   chat:        {"id","object":"chat.completion.chunk","created","model",
//                 "choices":[{"index":0,"delta":{"content":"..."},"logprobs":null,"finish_reason":null}]}
// The first chat chunk carries {"role":"assistant","content":""}; the last of either has an empty
// text / delta and the finish_reason; with stream_options.include_usage a chunk with "choices": [] and
// the usage follows. An error after the headers went out is an event {"error": {...}} (OpenAI's
// clients throw it), then [DONE].

#include <string>
#include <string_view>

#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/openai_response.h"

namespace ra::serve {

inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// Appends one event: "data: " + json_text + "\n\n".
void append_sse_event(std::string& out, std::string_view json_text);

enum class StreamKind { kCompletion, kChat };

// The events of one stream. A text chunk is a prefix and a suffix built once per stream around the
// text's JSON string, so a token costs one string escape.
class SseWriter {
 public:
  SseWriter(StreamKind kind, ResponseMeta meta);

  void start(std::string& out) const;  // chat: the role chunk; completions: nothing
  void text(std::string_view text, std::string& out) const;
  void finish(FinishReason reason, std::string& out) const;
  void usage(const Usage& usage, const Timings& timings, std::string& out) const;
  void error(const ApiError& error, std::string& out) const;
  void done(std::string& out) const { out.append(kSseDone); }

 private:
  nlohmann::ordered_json chunk(const nlohmann::ordered_json& choice) const;

  StreamKind kind_;
  ResponseMeta meta_;
  std::string text_prefix_;  // "data: {...\"text\":" (or "...\"content\":")
  std::string text_suffix_;  // ",...}\n\n"
};

}  // namespace ra::serve
