#pragma once
// What the routes share (internal to gpu_worker/serve): the options, metrics, contexts, the model once
// loaded and its scheduler; and the plumbing every route uses (route_support.cpp).

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/context_registry.h"
#include "gpu_worker/serve/job.h"
#include "gpu_worker/serve/metrics.h"
#include "gpu_worker/serve/scheduler.h"
#include "gpu_worker/serve/served_model.h"
#include "gpu_worker/serve/server_options.h"

namespace ra::serve {

enum class Phase { kLoading, kReady, kFailed };

struct ServerState {
  explicit ServerState(const ServeOptions& options);

  // The model when it can take requests; else throws ApiError 503 naming why (loading, failed, the
  // engine's health).
  ServedModel& ready_model();
  // "PREFIX-<16 hex digits>", unique in this server.
  std::string new_id(const char* prefix);

  const ServeOptions options;
  const int64_t started_at;  // Unix seconds
  Metrics metrics;
  ContextRegistry contexts;
  std::atomic<Phase> phase{Phase::kLoading};
  std::mutex failure_mutex;
  std::string load_failure;
  std::unique_ptr<ServedModel> model;     // set before phase becomes kReady
  std::unique_ptr<Scheduler> scheduler;   // likewise
  std::atomic<uint64_t> next_id{1};
  const uint64_t id_salt;
};

int64_t unix_seconds();

// The client went away: the route has cancelled its job and sends nothing.
struct ClientGone {};
// An error that ends a request whose job the scheduler has already counted in the metrics.
struct JobError {
  ApiError error;
};

using RouteHandler = std::function<void(const httplib::Request&, httplib::Response&)>;
// `handler` with the error plumbing: an ApiError becomes its OpenAI error response (and, for an
// `endpoint`, counts as invalid / rejected / failed); a ra::Error a 400; anything else a 500; a
// JobError its response uncounted.
httplib::Server::Handler guarded(ServerState& s, std::optional<Endpoint> endpoint, RouteHandler handler);

void send_json(httplib::Response& res, const nlohmann::ordered_json& body, int status = 200);
// What a request the server cancelled (it is stopping) gets: its client cancelled nothing.
ApiError cancelled_by_server();
void send_error(httplib::Response& res, const ApiError& error);

// 404 unless `requested` is the served model's id.
void check_model_name(const ServedModel& model, const std::string& requested);
// 400 (context_length_exceeded) when `prompt_tokens` do not fit the engine's context.
void check_prompt_length(const ServedModel& model, int64_t prompt_tokens);
// Queues `job`; throws 429 when the queue is full, 503 when the server is stopping.
void submit_job(ServerState& s, const std::shared_ptr<Job>& job);
// Waits in the handler for `job`: until it ends, or (until_end false) until it has text. Appends the
// text to `text`; returns whether the job ended. Cancels the job and throws ClientGone when the client
// disconnects, JobError 504 at the request deadline, and JobError with the job's own error if it failed.
bool wait_in_handler(ServerState& s, const httplib::Request& req, const std::shared_ptr<Job>& job,
                     std::string& text, bool until_end);
// The request deadline of `job`.
Clock::time_point deadline_of(const ServerState& s, const Job& job);

void add_generation_routes(httplib::Server& http, ServerState& s);
void add_context_routes(httplib::Server& http, ServerState& s);
void add_info_routes(httplib::Server& http, ServerState& s);

}  // namespace ra::serve
