// Prebuilt contexts: POST /v1/contexts prefills a document once (through the same queue as every
// request) and registers its tokens under an id; GET lists them, GET/DELETE /v1/contexts/{id} shows or
// forgets one. A completion that names the id, or whose prompt starts with the document's tokens,
// reuses its KV while the engine still holds it (the engine keeps one sequence: the latest request's).

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "gpu_worker/serve/openai_request.h"
#include "gpu_worker/serve/openai_response.h"
#include "gpu_worker/serve/server_state.h"

namespace ra::serve {
namespace {

using ojson = nlohmann::ordered_json;

ojson context_json(const ContextRecord& c, const std::string& model) {
  ojson out;
  out["id"] = c.id;
  out["object"] = "context";
  out["created"] = c.created;
  out["model"] = model;
  out["tokens"] = static_cast<int64_t>(c.tokens->size());
  out["prefill_ms"] = c.prefill_ms;
  return out;
}

std::vector<int32_t> context_tokens(const ServedModel& m, const ContextRequest& r) {
  if (r.prompt) {
    if (!r.prompt->is_ids) return encode_prompt(m, r.prompt->text);
    const int64_t vocab = m.engine->info().vocab_size;
    for (const int32_t id : r.prompt->ids) {
      if (id >= vocab) throw invalid_request(fmt::format("token id {} is outside the vocabulary", id), "prompt");
    }
    return r.prompt->ids;
  }
  if (!m.chat.chat) {
    throw invalid_request(fmt::format("the model '{}' has no chat template this server knows ({}); give a prompt",
                                      m.name, m.chat.unavailable),
                          "messages", "no_chat_template");
  }
  // The conversation so far, without opening the assistant's turn: a prefix of any longer conversation.
  return m.tokenizer->encode(render_chat(*m.chat.chat, r.messages, /*add_generation_prompt=*/false));
}

void create(ServerState& s, const httplib::Request& req, httplib::Response& res) {
  ServedModel& m = s.ready_model();
  const ContextRequest r = parse_context_request(parse_json_body(req.body));
  if (!r.model.empty()) check_model_name(m, r.model);
  if (const std::string& why = m.engine->info().contexts_unsupported; !why.empty()) {
    throw not_supported(fmt::format("this engine cannot reuse a prebuilt context: {}", why));
  }
  std::vector<int32_t> tokens = context_tokens(m, r);
  check_prompt_length(m, static_cast<int64_t>(tokens.size()));
  if (s.contexts.full()) {
    throw invalid_request(fmt::format("{} contexts exist, the most this server keeps (--max-contexts); DELETE "
                                      "/v1/contexts/ID one first",
                                      s.options.max_contexts),
                          {}, "too_many_contexts");
  }
  JobSpec spec;
  spec.endpoint = Endpoint::kContexts;
  spec.reusable_prefix = s.contexts.longest_prefix(tokens);
  spec.prompt = tokens;
  spec.max_tokens = 0;  // prefill only
  auto job = std::make_shared<Job>(std::move(spec));
  submit_job(s, job);
  std::string none;
  wait_in_handler(s, req, job, none, /*until_end=*/true);
  const GenerationStats& stats = job->result().stats;
  const ContextRecord c = s.contexts.add(std::move(tokens), stats.prefill_seconds * 1e3);
  ojson body = context_json(c, m.name);
  body["reused_tokens"] = stats.reused_tokens;
  send_json(res, body);
}

}  // namespace

void add_context_routes(httplib::Server& http, ServerState& s) {
  http.Post("/v1/contexts", guarded(s, Endpoint::kContexts, [&s](const auto& req, auto& res) { create(s, req, res); }));
  http.Get("/v1/contexts", guarded(s, std::nullopt, [&s](const auto&, auto& res) {
             const ServedModel& m = s.ready_model();
             ojson data = ojson::array();
             for (const ContextRecord& c : s.contexts.list()) data.push_back(context_json(c, m.name));
             send_json(res, ojson{{"object", "list"}, {"data", std::move(data)}});
           }));
  http.Get(R"(/v1/contexts/([^/]+))", guarded(s, std::nullopt, [&s](const auto& req, auto& res) {
             const ServedModel& m = s.ready_model();
             const std::string id = req.matches[1];
             const std::optional<ContextRecord> c = s.contexts.find(id);
             if (!c) throw not_found(fmt::format("no context '{}'", id), "context", "context_not_found");
             send_json(res, context_json(*c, m.name));
           }));
  http.Delete(R"(/v1/contexts/([^/]+))", guarded(s, std::nullopt, [&s](const auto& req, auto& res) {
                const std::string id = req.matches[1];
                if (!s.contexts.remove(id)) {
                  throw not_found(fmt::format("no context '{}'", id), "context", "context_not_found");
                }
                send_json(res, ojson{{"id", id}, {"object", "context.deleted"}, {"deleted", true}});
              }));
}

}  // namespace ra::serve
