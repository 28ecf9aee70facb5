#include "gpu_worker/serve/sse.h"

#include <utility>

#include "common/error.h"

namespace ra::serve {
namespace {

using ojson = nlohmann::ordered_json;

// Stands for the text in the chunk template. The text is the chunk's last string value ("choices" is
// its last member), so the template is cut at the placeholder's last occurrence, whatever the model's
// name or the id hold.
constexpr const char* kPlaceholder = "\x01ra-text\x01";

}  // namespace

void append_sse_event(std::string& out, std::string_view json_text) {
  out.append("data: ");
  out.append(json_text);
  out.append("\n\n");
}

SseWriter::SseWriter(StreamKind kind, ResponseMeta meta) : kind_(kind), meta_(std::move(meta)) {
  ojson choice;
  choice["index"] = 0;
  if (kind_ == StreamKind::kChat) {
    choice["delta"] = ojson{{"content", kPlaceholder}};
  } else {
    choice["text"] = kPlaceholder;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = nullptr;
  const std::string whole = dump_json(chunk(choice));
  const std::string marker = dump_json(ojson(kPlaceholder));
  const size_t at = whole.rfind(marker);
  RA_ASSERT(at != std::string::npos);
  text_prefix_ = "data: " + whole.substr(0, at);
  text_suffix_ = whole.substr(at + marker.size()) + "\n\n";
}

ojson SseWriter::chunk(const ojson& choice) const {
  ojson out;
  out["id"] = meta_.id;
  out["object"] = kind_ == StreamKind::kChat ? "chat.completion.chunk" : "text_completion";
  out["created"] = meta_.created;
  out["model"] = meta_.model;
  out["choices"] = choice.is_null() ? ojson::array() : ojson::array({choice});
  return out;
}

void SseWriter::start(std::string& out) const {
  if (kind_ != StreamKind::kChat) return;
  ojson choice;
  choice["index"] = 0;
  choice["delta"] = ojson{{"role", "assistant"}, {"content", ""}};
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = nullptr;
  append_sse_event(out, dump_json(chunk(choice)));
}

void SseWriter::text(std::string_view text, std::string& out) const {
  out.append(text_prefix_);
  out.append(dump_json(ojson(text)));
  out.append(text_suffix_);
}

void SseWriter::finish(FinishReason reason, std::string& out) const {
  ojson choice;
  choice["index"] = 0;
  if (kind_ == StreamKind::kChat) {
    choice["delta"] = ojson::object();
  } else {
    choice["text"] = "";
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason_text(reason);
  append_sse_event(out, dump_json(chunk(choice)));
}

void SseWriter::usage(const Usage& usage, const Timings& timings, std::string& out) const {
  ojson c = chunk(nullptr);
  c["usage"] = usage_json(usage);
  c["timings"] = timings_json(timings);
  append_sse_event(out, dump_json(c));
}

void SseWriter::error(const ApiError& error, std::string& out) const { append_sse_event(out, dump_json(error.body())); }

}  // namespace ra::serve
