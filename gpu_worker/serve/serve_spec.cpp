#include "gpu_worker/serve/serve_spec.h"

#include "common/error.h"

namespace ra::serve {

nlohmann::json to_json(const ServeSpec& s) {
  const ServeOptions& o = s.server;
  return nlohmann::json{{"action", s.action},
                        {"host", o.host},
                        {"port", o.port},
                        {"queue", o.queue_capacity},
                        {"http_threads", o.http_threads},
                        {"max_contexts", o.max_contexts},
                        {"default_max_tokens", o.default_max_tokens},
                        {"request_timeout", o.request_timeout_seconds},
                        {"log_requests", o.log_requests},
                        {"port_file", s.port_file},
                        {"name", s.name},
                        {"ctx", s.ctx},
                        {"load", s.load},
                        {"save", s.save},
                        {"exit_grace", s.exit_grace_seconds}};
}

ServeSpec serve_spec_from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    raise("{}: not valid JSON: {}", source, e.what());
  }
  RA_REQUIRE(j.is_object(), "{}: not a JSON object", source);
  ServeSpec s;
  ServeOptions& o = s.server;
  auto get = [&](const char* key, auto& out) {
    const auto it = j.find(key);
    if (it == j.end()) return;
    try {
      out = it->get<std::remove_reference_t<decltype(out)>>();
    } catch (const nlohmann::json::exception&) {
      raise("{}: field '{}' has the wrong type ({})", source, key, it->type_name());
    }
  };
  get("action", s.action);
  get("host", o.host);
  get("port", o.port);
  get("queue", o.queue_capacity);
  get("http_threads", o.http_threads);
  get("max_contexts", o.max_contexts);
  get("default_max_tokens", o.default_max_tokens);
  get("request_timeout", o.request_timeout_seconds);
  get("log_requests", o.log_requests);
  get("port_file", s.port_file);
  get("name", s.name);
  get("ctx", s.ctx);
  get("load", s.load);
  get("save", s.save);
  get("exit_grace", s.exit_grace_seconds);
  RA_REQUIRE(s.action == "serve" || s.action == "prefill", "{}: field 'action' is '{}', not serve or prefill", source,
             s.action);
  RA_REQUIRE(s.action != "prefill" || !s.save.empty(), "{}: action prefill needs field 'save'", source);
  return s;
}

}  // namespace ra::serve
