// POST /v1/completions and POST /v1/chat/completions: parse and check the request, turn it into prompt
// tokens (chat: the checkpoint's template; a named context: its tokens first), queue it, and answer with
// one JSON body or a stream of server-sent events.

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gpu_worker/serve/openai_request.h"
#include "gpu_worker/serve/openai_response.h"
#include "gpu_worker/serve/server_state.h"
#include "gpu_worker/serve/sse.h"

namespace ra::serve {
namespace {

// How long a stream waits for text before it looks at its connection and deadline again.
constexpr std::chrono::milliseconds kStreamPoll{20};

ContextRecord named_context(ServerState& s, const std::string& id) {
  std::optional<ContextRecord> c = s.contexts.find(id);
  if (!c) throw not_found(fmt::format("no context '{}' (POST /v1/contexts makes one)", id), "context", "context_not_found");
  return *c;
}

void check_ids(const ServedModel& m, std::span<const int32_t> ids) {
  const int64_t vocab = m.engine->info().vocab_size;
  for (const int32_t id : ids) {
    if (id >= vocab) {
      throw invalid_request(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab), "prompt",
                            "invalid_value");
    }
  }
}

// The prompt's tokens, and how many of them a prebuilt context covers.
std::vector<int32_t> completion_prompt(ServerState& s, const ServedModel& m, const CompletionRequest& r,
                                       int64_t& reusable) {
  const bool after_context = !r.params.context.empty();
  std::vector<int32_t> own;
  if (r.prompt.is_ids) {
    check_ids(m, r.prompt.ids);
    own = r.prompt.ids;
  } else {
    own = after_context ? m.tokenizer->encode(r.prompt.text) : encode_prompt(m, r.prompt.text);
  }
  if (!after_context) {
    reusable = s.contexts.longest_prefix(own);
    return own;
  }
  const ContextRecord c = named_context(s, r.params.context);
  std::vector<int32_t> tokens = *c.tokens;  // the document, then the prompt (without another BOS)
  tokens.insert(tokens.end(), own.begin(), own.end());
  reusable = static_cast<int64_t>(c.tokens->size());
  return tokens;
}

std::vector<int32_t> chat_prompt(ServerState& s, const ServedModel& m, const ChatRequest& r, int64_t& reusable) {
  if (!m.chat.chat) {
    throw invalid_request(fmt::format("the model '{}' has no chat template this server knows ({}); use /v1/completions",
                                      m.name, m.chat.unavailable),
                          "messages", "no_chat_template");
  }
  std::vector<int32_t> tokens = m.tokenizer->encode(render_chat(*m.chat.chat, r.messages, true));
  if (r.params.context.empty()) {
    reusable = s.contexts.longest_prefix(tokens);
    return tokens;
  }
  const ContextRecord c = named_context(s, r.params.context);
  if (c.tokens->size() > tokens.size() || !std::equal(c.tokens->begin(), c.tokens->end(), tokens.begin())) {
    throw invalid_request(fmt::format("the conversation does not start with context '{}': make the context from the "
                                      "conversation's first messages (POST /v1/contexts with \"messages\")",
                                      c.id),
                          "context", "context_mismatch");
  }
  reusable = static_cast<int64_t>(c.tokens->size());
  return tokens;
}

JobSpec make_spec(const ServerState& s, const ServedModel& m, const GenerationParams& p, Endpoint endpoint,
                  std::vector<int32_t> prompt, int64_t reusable) {
  JobSpec spec;
  spec.endpoint = endpoint;
  spec.prompt = std::move(prompt);
  spec.reusable_prefix = reusable;
  spec.sampling.temperature = p.temperature;
  spec.sampling.top_p = p.top_p;
  spec.sampling.seed = p.seed ? *p.seed : (static_cast<uint64_t>(std::random_device{}()) << 32 | std::random_device{}());
  const int64_t no_limit = m.engine->info().max_positions;  // the engine stops when the cache is full
  spec.max_tokens = p.max_tokens.value_or(endpoint == Endpoint::kChat ? no_limit : s.options.default_max_tokens);
  spec.stop_tokens = endpoint == Endpoint::kChat ? m.chat_stop_tokens : m.stop_tokens;
  spec.stop_strings = p.stop;
  return spec;
}

Usage usage_of(const JobResult& r) {
  return {r.stats.prompt_tokens, r.stats.generated_tokens, r.stats.reused_tokens};
}

Timings timings_of(const JobResult& r) {
  Timings t;
  t.queue_ms = r.queue_seconds * 1e3;
  t.prefill_ms = r.stats.prefill_seconds * 1e3;
  t.first_token_ms = r.first_token_seconds * 1e3;
  t.decode_ms = r.stats.decode_seconds * 1e3;
  t.prefilled_tokens = r.stats.prompt_tokens - r.stats.reused_tokens;
  return t;
}

// The state of one streamed response, shared by httplib's content provider calls.
struct Stream {
  ServerState* server;
  std::shared_ptr<Job> job;
  SseWriter writer;
  bool include_usage;
  Clock::time_point deadline;
  std::string piece;        // the text the handler waited for, then each wait's
  bool ended = false;       // the job had ended when the handler returned
  bool started = false;
  std::string out;          // the events of one provider call (reused)

  // Ends the job early: the client left, or the deadline passed.
  void abandon() {
    job->cancel();
    server->scheduler->withdraw(job);
  }

  // One provider call: waits a little for text, writes what there is. False ends the response.
  bool pump(httplib::DataSink& sink) {
    out.clear();
    if (!started) {
      writer.start(out);
      started = true;
    } else {
      ended = job->wait(piece, std::min(deadline, Clock::now() + kStreamPoll));
    }
    if (!piece.empty()) writer.text(piece, out);
    if (ended) {
      const JobResult& r = job->result();
      if (r.error) {
        writer.error(*r.error, out);
      } else if (r.stats.finish == FinishReason::kCancelled) {
        writer.error(cancelled_by_server(), out);
      } else {
        writer.finish(r.stats.finish, out);
        if (include_usage) writer.usage(usage_of(r), timings_of(r), out);
      }
      writer.done(out);
    } else if (Clock::now() >= deadline) {
      abandon();
      writer.error(timed_out(fmt::format("the request did not finish within {} s (--request-timeout)",
                                         server->options.request_timeout_seconds)),
                   out);
      writer.done(out);
      ended = true;
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) {
      abandon();
      return false;
    }
    if (ended) {
      sink.done();
      return true;
    }
    if (!sink.is_writable()) {  // httplib's check reads a FIN/RST from the peer
      abandon();
      return false;
    }
    return true;
  }
};

// The headers go out once the request has its first text (or has ended), so that what fails before
// that (the queue, the prefill, the engine) still gets its own HTTP status.
void respond(ServerState& s, const httplib::Request& req, httplib::Response& res, const std::shared_ptr<Job>& job,
             StreamKind kind, ResponseMeta meta, const GenerationParams& params) {
  std::string text;
  const bool ended = wait_in_handler(s, req, job, text, /*until_end=*/!params.stream);
  const JobResult& r = job->result();
  if (!params.stream) {
    if (kind == StreamKind::kChat) {
      send_json(res, chat_body(meta, text, r.stats.finish, usage_of(r), timings_of(r)));
    } else {
      send_json(res, completion_body(meta, text, r.stats.finish, usage_of(r), timings_of(r)));
    }
    return;
  }
  auto stream = std::make_shared<Stream>(
      Stream{&s, job, SseWriter(kind, std::move(meta)), params.include_usage, deadline_of(s, *job), std::move(text),
             ended});
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream", [stream](size_t, httplib::DataSink& sink) { return stream->pump(sink); },
      [stream](bool success) {
        if (!success) stream->abandon();
      });
}

void handle(ServerState& s, const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  ServedModel& m = s.ready_model();
  const nlohmann::json body = parse_json_body(req.body);
  GenerationParams params;
  std::vector<int32_t> prompt;
  int64_t reusable = 0;
  if (endpoint == Endpoint::kChat) {
    ChatRequest r = parse_chat_request(body);
    check_model_name(m, r.params.model);
    prompt = chat_prompt(s, m, r, reusable);
    params = std::move(r.params);
  } else {
    CompletionRequest r = parse_completion_request(body);
    check_model_name(m, r.params.model);
    prompt = completion_prompt(s, m, r, reusable);
    params = std::move(r.params);
  }
  check_prompt_length(m, static_cast<int64_t>(prompt.size()));
  auto job = std::make_shared<Job>(make_spec(s, m, params, endpoint, std::move(prompt), reusable));
  submit_job(s, job);
  const StreamKind kind = endpoint == Endpoint::kChat ? StreamKind::kChat : StreamKind::kCompletion;
  ResponseMeta meta{s.new_id(kind == StreamKind::kChat ? "chatcmpl" : "cmpl"), unix_seconds(), m.name};
  respond(s, req, res, job, kind, std::move(meta), params);
}

}  // namespace

void add_generation_routes(httplib::Server& http, ServerState& s) {
  http.Post("/v1/completions", guarded(s, Endpoint::kCompletions, [&s](const auto& req, auto& res) {
              handle(s, req, res, Endpoint::kCompletions);
            }));
  http.Post("/v1/chat/completions", guarded(s, Endpoint::kChat, [&s](const auto& req, auto& res) {
              handle(s, req, res, Endpoint::kChat);
            }));
}

}  // namespace ra::serve
