// GET /health, GET /metrics, GET /v1/models, and OpenAI-shaped errors for unknown URLs.

#include <fmt/format.h>

#include "gpu_worker/serve/openai_response.h"
#include "gpu_worker/serve/server_state.h"

namespace ra::serve {
namespace {

using ojson = nlohmann::ordered_json;

// 200 {"status": "ok", ...} when requests can run; else 503 {"status": "loading" | "error", "error": {...}}.
void health(ServerState& s, httplib::Response& res) {
  try {
    const ServedModel& m = s.ready_model();
    const EngineInfo& info = m.engine->info();
    s.metrics.engine_ready->Set(1);
    send_json(res, ojson{{"status", "ok"},
                         {"model", m.name},
                         {"backend", info.backend},
                         {"mode", info.mode},
                         {"max_model_len", info.max_positions}});
  } catch (const ApiError& e) {
    s.metrics.engine_ready->Set(0);
    ojson body = e.body();
    body["status"] = s.phase.load() == Phase::kLoading ? "loading" : "error";
    send_json(res, body, e.status());
  }
}

}  // namespace

void add_info_routes(httplib::Server& http, ServerState& s) {
  http.Get("/health", [&s](const httplib::Request&, httplib::Response& res) { health(s, res); });
  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    if (s.phase.load() == Phase::kReady) s.metrics.engine_ready->Set(s.model->engine->health().ok ? 1 : 0);
    res.set_content(s.metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", guarded(s, std::nullopt, [&s](const auto&, auto& res) {
             const ServedModel& m = s.ready_model();
             send_json(res, models_body(m.name, s.started_at, m.engine->info().max_positions));
           }));
  // Routes that do not exist (and httplib's own errors): OpenAI's shape, unless a route wrote a body.
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message =
        res.status == 404 ? fmt::format("Invalid URL ({} {})", req.method, req.path)
                          : fmt::format("{} {}: HTTP {}", req.method, req.path, res.status);
    send_json(res, ApiError(res.status, "invalid_request_error", message).body(), res.status);
    return httplib::Server::HandlerResponse::Handled;
  }));
}

}  // namespace ra::serve
