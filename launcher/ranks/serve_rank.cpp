#include "launcher/ranks/serve_rank.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <thread>

#include "common/error.h"
#include "gpu_worker/offload/retrieval_client.h"
#include "gpu_worker/serve/inproc_setup.h"  // make_served_model
#include "gpu_worker/serve/pipeline_engine.h"
#include "gpu_worker/serve/serve_process.h"
#include "gpu_worker/serve/serve_spec.h"
#include "gpu_worker/serve/server.h"
#include "launcher/ranks/model_setup.h"
#include "launcher/ranks/peer_links.h"
#include "launcher/ranks/retriever_reports.h"
#include "launcher/ranks/retriever_setup.h"
#include "launcher/ranks/worker_setup.h"
#include "transport/heartbeat.h"

namespace ra {
namespace {

constexpr const char* kProgram = "ra-gpu-worker";

// SIGINT/SIGTERM/SIGHUP: before the server serves, leave at once (as every rank does); after, set a
// flag that the serving loop polls, so that the requests in flight end with an answer.
std::atomic<int> g_stop_signal{0};
std::atomic<bool> g_serving{false};

extern "C" void on_stop_signal(int sig) {
  if (!g_serving.load()) _exit(128 + sig);
  g_stop_signal.store(sig);
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

const char* serve_spec_from_environment() { return std::getenv(serve::kServeSpecEnv); }

int run_serve_rank(transport::MpiSession& mpi, const RunPlan& plan, const std::string& spec_json) {
  using namespace serve;
  const ServeSpec spec = serve_spec_from_json(spec_json, std::string("the environment variable ") + kServeSpecEnv);
  install_stop_handlers();
  const RunConfig& c = plan.config;
  if (c.worker_threads > 0) omp_set_num_threads(c.worker_threads);
  const bool serving = spec.action == "serve";

  // The retrievers wait for the channels: connect before the (long) model load.
  PeerLinks links = connect_peers(mpi, plan);
  transport::HeartbeatThread heartbeat(links.raw());

  std::unique_ptr<Server> server;
  if (serving) {
    server = std::make_unique<Server>(spec.server);
    const int port = server->start();
    std::fprintf(stderr, "ra serve: listening on http://%s:%d\n", spec.server.host.c_str(), port);
    serve::write_port_file(spec.port_file, port);
  }
  try {
    LoadedModel loaded = load_model_for(c);
    check_geometry(plan, loaded.model);
    std::vector<int32_t> document;
    if (!serving) document = prompt_tokens(loaded, prompt_text_for(c, loaded));
    const ModelConfig mc = loaded.model.config;

    auto client = std::make_unique<RetrievalClient>(links.raw(), retrieval_client_options(plan, mc));
    client->handshake(plan_digest(plan), canonical_plan_text(plan));
    for (const std::string& line : describe_retriever_reports(plan, client->reports(), mpi.host())) {
      std::fprintf(stderr, "%s: %s\n", kProgram, line.c_str());
    }
    PipelineEngineOptions eo;
    eo.mode = std::string(name(c.mode));
    eo.backend = c.backend;
    eo.threads = c.worker_threads;
    eo.max_positions = spec.ctx;
    eo.sinks = c.sinks;
    eo.window = c.window;
    eo.capture_queries = ships_prefill_queries(c);
    eo.max_train_queries = prefill_queries_to_ship(c);
    auto engine = std::make_unique<PipelineEngine>(std::make_unique<Model>(std::move(loaded.model)), std::move(client),
                                                   links.raw(), eo);
    PipelineEngine& e = *engine;
    const EngineInfo& info = e.info();
    std::fprintf(stderr, "%s: mode %s, %d retrievers over %s, %s backend, KV cache of %lld positions\n", kProgram,
                 info.mode.c_str(), plan.num_retrievers(), std::string(name(c.transport)).c_str(),
                 info.backend.c_str(), static_cast<long long>(info.max_positions));

    if (!serving) {
      const auto t0 = std::chrono::steady_clock::now();
      e.prefill_and_save(document, spec.save);
      std::fprintf(stderr, "ra prefill: %zu tokens prefilled, indexed and saved to %s in %.2f s\n", document.size(),
                   spec.save.c_str(), seconds_since(t0));
      e.shutdown(std::chrono::seconds(10));
      mpi.barrier("shutdown", transport::deadline_after(std::chrono::seconds(30)));
      return 0;
    }

    if (!spec.load.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<int32_t> tokens = e.load(spec.load);
      const double ms = seconds_since(t0) * 1e3;
      const size_t n = tokens.size();
      const std::string id = server->add_context(std::move(tokens), ms);
      std::fprintf(stderr, "ra serve: loaded the context %s (%zu tokens) from %s in %.2f s; %s\n", id.c_str(), n,
                   spec.load.c_str(), ms / 1e3, e.load_note().c_str());
    }
    ServedModel served = make_served_model(std::move(engine), std::move(loaded.tokenizer), mc, c.model, c.tokenizer,
                                           spec.name);
    std::fprintf(stderr, "ra serve: serving '%s' (chat: %s)\n", served.name.c_str(),
                 served.chat.chat ? std::string(name(served.chat.chat->layout)).c_str()
                                  : served.chat.unavailable.c_str());
    server->attach(std::move(served));
    g_serving.store(true);

    // Serve until a signal, or until the engine fails and the grace period has passed.
    std::chrono::steady_clock::time_point failed_at{};
    for (;;) {
      if (const int sig = g_stop_signal.load(); sig != 0) {
        std::fprintf(stderr, "ra serve: signal %d: stopping\n", sig);
        // Bounded: the requests in flight end within one token, but never wait on a stuck build for long.
        std::thread([sig] {
          std::this_thread::sleep_for(std::chrono::seconds(5));
          std::_Exit(128 + sig);
        }).detach();
        server->stop();
        std::fflush(stdout);
        std::fflush(stderr);
        std::_Exit(128 + sig);
      }
      const EngineHealth health = e.health();
      if (!health.ok) {
        if (failed_at == std::chrono::steady_clock::time_point{}) {
          failed_at = std::chrono::steady_clock::now();
          std::fprintf(stderr, "ra serve: the engine failed: %s\n", health.cause.c_str());
        } else if (seconds_since(failed_at) >= spec.exit_grace_seconds) {
          server->stop();
          raise("the engine failed: {}", health.cause);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  } catch (const Error& e) {
    if (server) server->fail_loading(e.what());
    throw;
  }
}

}  // namespace ra
