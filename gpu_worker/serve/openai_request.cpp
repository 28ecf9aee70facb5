#include "gpu_worker/serve/openai_request.h"

#include <cmath>
#include <limits>

#include "gpu_worker/serve/api_error.h"

namespace ra::serve {
namespace {

using json = nlohmann::json;

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "null";
  }
}

ApiError wrong_type(const std::string& field, const char* expected, const json& got) {
  return invalid_request(fmt::format("Invalid type for '{}': expected {}, but got {}.", field, expected, type_name(got)),
                         field, "invalid_type");
}

ApiError bad_value(const std::string& field, const std::string& why) {
  return invalid_request(fmt::format("Invalid '{}': {}", field, why), field, "invalid_value");
}

ApiError unsupported(const std::string& field, const std::string& why) {
  return invalid_request(fmt::format("Unsupported '{}': {}", field, why), field, "unsupported_value");
}

// Typed, null-as-absent reads of one object's fields.
class Fields {
 public:
  explicit Fields(const json& object) : o_(object) {}

  const json* get(const char* name) const {
    const auto it = o_.find(name);
    return it == o_.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<std::string> string(const char* name) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw wrong_type(name, "a string", *v);
    return v->get<std::string>();
  }
  std::optional<bool> boolean(const char* name) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw wrong_type(name, "a boolean", *v);
    return v->get<bool>();
  }
  std::optional<int64_t> integer(const char* name, int64_t min, int64_t max) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(max)) {
      throw bad_value(name, fmt::format("{} is above the maximum {}.", v->get<uint64_t>(), max));
    }
    if (!v->is_number_integer()) throw wrong_type(name, "an integer", *v);
    const auto x = v->get<int64_t>();
    if (x < min) throw bad_value(name, fmt::format("{} is below the minimum {}.", x, min));
    if (x > max) throw bad_value(name, fmt::format("{} is above the maximum {}.", x, max));
    return x;
  }
  // A number in [min, max], or (min, max] when min_open.
  std::optional<double> number(const char* name, double min, double max, bool min_open) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) throw wrong_type(name, "a number", *v);
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < min || (min_open && x == min) || x > max) {
      throw bad_value(name, fmt::format("{} is outside {}{}, {}].", x, min_open ? "(" : "[", min, max));
    }
    return x;
  }

 private:
  const json& o_;
};

const json& object_body(const json& body) {
  if (!body.is_object()) throw invalid_request("the request body must be a JSON object", {}, "invalid_json");
  return body;
}

// Features that change what comes back and that this server does not have: refused, never ignored.
void refuse_unsupported(const Fields& f, bool chat) {
  if (const auto n = f.integer("n", 1, 128); n && *n != 1) throw unsupported("n", "only n = 1 is supported.");
  if (const auto b = f.integer("best_of", 1, 128); b && *b != 1) {
    throw unsupported("best_of", "only best_of = 1 is supported.");
  }
  if (!chat) {
    if (f.boolean("echo").value_or(false)) throw unsupported("echo", "echoing the prompt is not supported.");
    if (f.get("logprobs")) throw unsupported("logprobs", "log probabilities are not supported.");
    if (const auto s = f.string("suffix"); s && !s->empty()) throw unsupported("suffix", "suffixes are not supported.");
  } else {
    if (f.boolean("logprobs").value_or(false)) throw unsupported("logprobs", "log probabilities are not supported.");
    if (f.get("top_logprobs")) throw unsupported("top_logprobs", "log probabilities are not supported.");
    for (const char* name : {"tools", "functions"}) {
      const json* v = f.get(name);
      if (v && !(v->is_array() && v->empty())) throw unsupported(name, "tool calls are not supported.");
    }
    if (const json* v = f.get("tool_choice"); v && *v != "none") {
      throw unsupported("tool_choice", "tool calls are not supported.");
    }
    if (const json* v = f.get("response_format"); v && !(v->is_object() && v->value("type", "") == "text")) {
      throw unsupported("response_format", "only {\"type\": \"text\"} is supported.");
    }
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    if (const auto p = f.number(name, -2.0, 2.0, false); p && *p != 0.0) {
      throw unsupported(name, "penalties are not supported (0 only).");
    }
  }
  if (const json* v = f.get("logit_bias"); v && !(v->is_object() && v->empty())) {
    throw unsupported("logit_bias", "logit biases are not supported.");
  }
}

GenerationParams read_params(const json& body, bool chat) {
  const Fields f(body);
  GenerationParams p;
  const auto model = f.string("model");
  if (!model) {
    throw invalid_request("you must provide a model parameter", "model", "missing_required_parameter");
  }
  p.model = *model;
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  if (chat) {
    p.max_tokens = f.integer("max_completion_tokens", 1, kMaxInt);
    if (!p.max_tokens) p.max_tokens = f.integer("max_tokens", 1, kMaxInt);
  } else {
    p.max_tokens = f.integer("max_tokens", 1, kMaxInt);
  }
  p.temperature = static_cast<float>(f.number("temperature", 0.0, 2.0, false).value_or(1.0));
  p.top_p = static_cast<float>(f.number("top_p", 0.0, 1.0, true).value_or(1.0));
  if (const json* seed = f.get("seed")) {
    if (seed->is_number_unsigned()) {
      p.seed = seed->get<uint64_t>();
    } else if (seed->is_number_integer()) {
      p.seed = static_cast<uint64_t>(seed->get<int64_t>());
    } else {
      throw wrong_type("seed", "an integer", *seed);
    }
  }
  if (const json* stop = f.get("stop")) {
    if (stop->is_string()) {
      p.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > 4) throw bad_value("stop", fmt::format("at most 4 stop strings, got {}.", stop->size()));
      for (const json& s : *stop) {
        if (!s.is_string()) throw wrong_type("stop", "a string or an array of strings", s);
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      throw wrong_type("stop", "a string or an array of strings", *stop);
    }
    for (const std::string& s : p.stop) {
      if (s.empty()) throw bad_value("stop", "stop strings must not be empty.");
    }
  }
  p.stream = f.boolean("stream").value_or(false);
  if (const json* options = f.get("stream_options")) {
    if (!options->is_object()) throw wrong_type("stream_options", "an object", *options);
    p.include_usage = Fields(*options).boolean("include_usage").value_or(false);
  }
  p.context = f.string("context").value_or("");
  refuse_unsupported(f, chat);
  return p;
}

int32_t token_id(const json& v) {
  if (!v.is_number_integer()) throw wrong_type("prompt", "a string, or an array of token ids (integers)", v);
  const auto id = v.get<int64_t>();
  if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
    throw bad_value("prompt", fmt::format("token id {} is not a vocabulary id.", id));
  }
  return static_cast<int32_t>(id);
}

PromptInput read_prompt(const json& body) {
  const json* v = Fields(body).get("prompt");
  if (!v) throw invalid_request("you must provide a prompt", "prompt", "missing_required_parameter");
  PromptInput out;
  if (v->is_string()) {
    out.text = v->get<std::string>();
    return out;
  }
  if (!v->is_array()) throw wrong_type("prompt", "a string or an array", *v);
  if (v->empty()) throw bad_value("prompt", "the prompt is empty.");
  const json& first = (*v)[0];
  if (first.is_string() || first.is_array()) {  // a batch of prompts: only a batch of one
    if (v->size() != 1) throw unsupported("prompt", "one prompt per request (no batches).");
    if (first.is_string()) {
      out.text = first.get<std::string>();
      return out;
    }
    return read_prompt(json{{"prompt", first}});
  }
  out.is_ids = true;
  out.ids.reserve(v->size());
  for (const json& id : *v) out.ids.push_back(token_id(id));
  return out;
}

std::string message_content(const json& content, size_t index) {
  const std::string field = fmt::format("messages[{}].content", index);
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw wrong_type(field, "a string or an array of content parts", content);
  std::string text;
  for (const json& part : content) {
    if (!part.is_object()) throw wrong_type(field, "an array of content parts (objects)", part);
    const std::string type = part.value("type", "");
    if (type != "text") throw unsupported(field, fmt::format("content parts of type '{}' (text only).", type));
    const auto t = Fields(part).string("text");
    if (!t) throw invalid_request("a text content part needs 'text'", field, "missing_required_parameter");
    if (!text.empty()) text += "\n";
    text += *t;
  }
  return text;
}

std::vector<ChatMessage> read_messages(const json& body, bool required) {
  const json* v = Fields(body).get("messages");
  if (!v) {
    if (required) throw invalid_request("you must provide messages", "messages", "missing_required_parameter");
    return {};
  }
  if (!v->is_array()) throw wrong_type("messages", "an array", *v);
  if (v->empty()) throw bad_value("messages", "at least one message is needed.");
  std::vector<ChatMessage> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string at = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw wrong_type(at, "an object", m);
    const Fields f(m);
    const auto role = f.string("role");
    if (!role) throw invalid_request("every message needs a role", at + ".role", "missing_required_parameter");
    ChatMessage msg;
    if (*role == "system" || *role == "developer") {
      msg.role = "system";
    } else if (*role == "user" || *role == "assistant") {
      msg.role = *role;
    } else if (*role == "tool" || *role == "function") {
      throw unsupported(at + ".role", "tool messages are not supported.");
    } else {
      throw bad_value(at + ".role", fmt::format("'{}' is not one of system, developer, user, assistant.", *role));
    }
    const json* content = f.get("content");
    if (!content) throw invalid_request("every message needs content", at + ".content", "missing_required_parameter");
    msg.content = message_content(*content, i);
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace

nlohmann::json parse_json_body(std::string_view body) {
  json out;
  try {
    out = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large (1e99999)
    throw invalid_request(fmt::format("the request body is not valid JSON: {}", e.what()), {}, "invalid_json");
  }
  object_body(out);
  return out;
}

CompletionRequest parse_completion_request(const json& body) {
  CompletionRequest r;
  r.params = read_params(object_body(body), /*chat=*/false);
  r.prompt = read_prompt(body);
  return r;
}

ChatRequest parse_chat_request(const json& body) {
  ChatRequest r;
  r.params = read_params(object_body(body), /*chat=*/true);
  r.messages = read_messages(body, /*required=*/true);
  return r;
}

ContextRequest parse_context_request(const json& body) {
  ContextRequest r;
  const Fields f(object_body(body));
  r.model = f.string("model").value_or("");
  if (f.get("prompt")) {
    r.prompt = read_prompt(body);
  } else {
    r.messages = read_messages(body, /*required=*/false);
    if (r.messages.empty()) {
      throw invalid_request("a context needs a prompt (the document) or messages", "prompt",
                            "missing_required_parameter");
    }
  }
  return r;
}

}  // namespace ra::serve
