#include "gpu_worker/serve/server.h"

#include <httplib.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "gpu_worker/serve/server_state.h"

namespace ra::serve {

struct Server::Impl {
  explicit Impl(const ServeOptions& options) : state(options) {}

  ServerState state;
  httplib::Server http;
  std::thread listener;
  std::mutex lifecycle;  // start / attach / stop
  bool stopped = false;
};

Server::Server(const ServeOptions& options) : impl_(std::make_unique<Impl>(options)) {
  ServerState& s = impl_->state;
  httplib::Server& http = impl_->http;
  // Every waiting request holds a thread; the spare ones answer /health, /metrics and refusals.
  const size_t threads = options.http_threads > 0 ? static_cast<size_t>(options.http_threads)
                                                  : options.queue_capacity + 8;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_keep_alive_timeout(options.keep_alive_seconds);
  http.set_payload_max_length(options.max_body_bytes);
  http.set_tcp_nodelay(true);  // one SSE event per token: do not let Nagle hold them
  if (options.log_requests) {
    http.set_logger([&s](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "serve: %s %s %d (queue %zu)\n", req.method.c_str(), req.path.c_str(), res.status,
                   s.scheduler ? static_cast<size_t>(s.metrics.queue_depth->Value()) : size_t{0});
    });
  }
  add_info_routes(http, s);
  add_generation_routes(http, s);
  add_context_routes(http, s);
}

Server::~Server() { stop(); }

int Server::start() {
  std::lock_guard lock(impl_->lifecycle);
  RA_REQUIRE(!impl_->listener.joinable() && !impl_->stopped, "the server was already started");
  std::signal(SIGPIPE, SIG_IGN);
  const ServeOptions& o = impl_->state.options;
  int port = o.port;
  if (o.port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
  } else if (!impl_->http.bind_to_port(o.host, o.port)) {
    port = -1;
  }
  RA_REQUIRE(port > 0, "cannot listen on {}:{}: {}", o.host, o.port, std::strerror(errno));
  impl_->listener = std::thread([this] { impl_->http.listen_after_bind(); });
  // stop() can only end a listener that has started listening: wait for it (briefly).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!impl_->http.is_running()) {
    RA_REQUIRE(std::chrono::steady_clock::now() < deadline, "the HTTP listener on {}:{} did not start", o.host, port);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return port;
}

void Server::attach(ServedModel model) {
  std::lock_guard lock(impl_->lifecycle);
  ServerState& s = impl_->state;
  RA_REQUIRE(s.phase.load() == Phase::kLoading && !impl_->stopped, "the server already has a model, or has stopped");
  RA_ASSERT(model.engine && model.tokenizer);
  if (model.engine->info().has_retrieval) s.metrics.enable_retrieval();
  s.model = std::make_unique<ServedModel>(std::move(model));
  s.scheduler = std::make_unique<Scheduler>(*s.model, s.metrics, s.options.queue_capacity);
  s.metrics.engine_ready->Set(1);
  s.phase.store(Phase::kReady);
}

void Server::fail_loading(const std::string& cause) {
  std::lock_guard lock(impl_->lifecycle);
  ServerState& s = impl_->state;
  {
    std::lock_guard failure(s.failure_mutex);
    s.load_failure = cause;
  }
  s.phase.store(Phase::kFailed);
}

std::string Server::add_context(std::vector<int32_t> tokens, double prefill_ms) {
  return impl_->state.contexts.add(std::move(tokens), prefill_ms).id;
}

void Server::stop() {
  std::lock_guard lock(impl_->lifecycle);
  if (impl_->stopped) return;
  impl_->stopped = true;
  // The jobs first, so that every handler waiting on one returns; then the listener and its threads.
  if (impl_->state.scheduler) impl_->state.scheduler->stop();
  impl_->http.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace ra::serve
