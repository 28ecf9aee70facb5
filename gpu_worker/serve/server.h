#pragma once
// The OpenAI-compatible HTTP server (cpp-httplib): POST /v1/completions, POST /v1/chat/completions,
// GET /v1/models, POST|GET /v1/contexts, GET|DELETE /v1/contexts/{id}, GET /health, GET /metrics.
// docs/serve.md describes the endpoints and their semantics.
//
// Life cycle: start() listens at once, so /health answers 503 ("loading") while the model loads;
// attach() hands over the loaded model and starts the decode thread; fail_loading() makes /health and
// every request answer 503 with the cause. An engine that reports a failure (Engine::health) turns
// /health to 503 too, and every request fails with 503 naming the cause.
//
// A client that closes its connection while sending would raise SIGPIPE (httplib sends without
// MSG_NOSIGNAL), so start() sets SIGPIPE to SIG_IGN for the process.

#include <memory>
#include <string>
#include <vector>

#include "gpu_worker/serve/served_model.h"
#include "gpu_worker/serve/server_options.h"

namespace ra::serve {

class Server {
 public:
  explicit Server(const ServeOptions& options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds options.host:options.port and serves on background threads; returns the port (the chosen one
  // for port 0). Throws ra::Error when it cannot listen.
  int start();
  // Serves `model` from now on. Call once.
  void attach(ServedModel model);
  // Loading failed: /health and every request answer 503 with `cause`.
  void fail_loading(const std::string& cause);
  // Registers a prebuilt context whose KV the engine already holds (`ra serve --load`); returns its id.
  std::string add_context(std::vector<int32_t> tokens, double prefill_ms);
  // Cancels the running and the queued requests (each ends within one token), stops listening and
  // joins every thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ra::serve
