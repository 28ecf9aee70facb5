// The plumbing every route uses: error responses, the model gate, job submission and the wait for a
// non-streamed job's end (server_state.h).

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "gpu_worker/serve/connection_watch.h"
#include "gpu_worker/serve/openai_response.h"
#include "gpu_worker/serve/server_state.h"

namespace ra::serve {
namespace {

// How often a waiting handler looks at its client's connection.
constexpr std::chrono::milliseconds kClientPoll{20};

Outcome outcome_of(const ApiError& e) {
  if (e.status() == 429) return Outcome::kRejected;
  return e.status() >= 500 ? Outcome::kFailed : Outcome::kInvalid;
}

}  // namespace

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ServerState::ServerState(const ServeOptions& o)
    : options(o), started_at(unix_seconds()), contexts(o.max_contexts), id_salt(std::random_device{}()) {}

ServedModel& ServerState::ready_model() {
  switch (phase.load()) {
    case Phase::kLoading: throw unavailable("the model is still loading", "loading");
    case Phase::kFailed: {
      std::lock_guard lock(failure_mutex);
      throw unavailable(fmt::format("the model failed to load: {}", load_failure), "load_failed");
    }
    case Phase::kReady: break;
  }
  const EngineHealth health = model->engine->health();
  if (!health.ok) throw unavailable(fmt::format("the engine failed: {}", health.cause), "engine_failed");
  return *model;
}

std::string ServerState::new_id(const char* prefix) {
  return fmt::format("{}-{:08x}{:08x}", prefix, static_cast<uint32_t>(id_salt), next_id.fetch_add(1));
}

ApiError cancelled_by_server() {
  return unavailable("the request was cancelled: the server is stopping", "shutting_down");
}

void send_json(httplib::Response& res, const nlohmann::ordered_json& body, int status) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& error) {
  send_json(res, error.body(), error.status());
  if (error.status() == 429) res.set_header("Retry-After", "1");
}

httplib::Server::Handler guarded(ServerState& s, std::optional<Endpoint> endpoint, RouteHandler handler) {
  return [&s, endpoint, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    auto fail = [&](const ApiError& e) {
      if (endpoint) s.metrics.count_request(*endpoint, outcome_of(e));
      send_error(res, e);
    };
    try {
      handler(req, res);
    } catch (const ClientGone&) {
      res.status = 499;  // nobody reads it: the connection is gone
    } catch (const JobError& e) {
      send_error(res, e.error);
    } catch (const ApiError& e) {
      fail(e);
    } catch (const Error& e) {
      fail(invalid_request(e.what()));
    } catch (const std::exception& e) {
      fail(internal_error(e.what()));
    }
  };
}

void check_model_name(const ServedModel& model, const std::string& requested) {
  if (requested != model.name) {
    throw not_found(fmt::format("The model '{}' does not exist: this server serves '{}'", requested, model.name),
                    "model", "model_not_found");
  }
}

void check_prompt_length(const ServedModel& model, int64_t prompt_tokens) {
  const int64_t limit = model.engine->info().max_positions;
  if (prompt_tokens > limit) {
    throw invalid_request(fmt::format("This model's maximum context length is {} tokens, but the prompt has {} tokens.",
                                      limit, prompt_tokens),
                          "prompt", "context_length_exceeded");
  }
  if (prompt_tokens == 0) throw invalid_request("the prompt is empty (and the model has no BOS token)", "prompt");
}

void submit_job(ServerState& s, const std::shared_ptr<Job>& job) {
  if (s.scheduler->submit(job)) return;
  if (s.scheduler->stopped()) throw unavailable("the server is shutting down", "shutting_down");
  throw server_busy(fmt::format("the server is busy: {} requests are waiting (queue capacity {}); retry later",
                                s.options.queue_capacity, s.options.queue_capacity));
}

Clock::time_point deadline_of(const ServerState& s, const Job& job) {
  return job.admitted() + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(s.options.request_timeout_seconds));
}

bool wait_in_handler(ServerState& s, const httplib::Request& req, const std::shared_ptr<Job>& job,
                     std::string& text, bool until_end) {
  const ConnectionWatch watch(req);
  const Clock::time_point deadline = deadline_of(s, *job);
  std::string piece;
  for (;;) {
    const Clock::time_point now = Clock::now();
    const bool ended = job->wait(piece, std::min(deadline, now + kClientPoll));
    text += piece;
    if (ended) break;
    if (!until_end && !text.empty()) return false;
    if (watch.closed()) {
      job->cancel();
      s.scheduler->withdraw(job);
      throw ClientGone{};
    }
    if (Clock::now() >= deadline) {
      job->cancel();
      s.scheduler->withdraw(job);
      throw JobError{timed_out(fmt::format("the request did not finish within {} s (--request-timeout)",
                                           s.options.request_timeout_seconds))};
    }
  }
  if (job->result().error) throw JobError{*job->result().error};
  if (job->result().stats.finish == FinishReason::kCancelled) throw JobError{cancelled_by_server()};
  return true;
}

}  // namespace ra::serve
