// ra-serve-inproc: the OpenAI-compatible server on a backend in this process (modes full and window),
// for tests and measurements without the run config (`ra serve`, launcher/cli/serve_command.h, serves
// every mode: full and window in its own process, the others from the worker rank of an mpirun job).
//
//   ra-serve-inproc [--model DIR|FILE | --geometry demo] [--tokenizer bytes|FILE] [--host H] [--port P]
//                   [--backend cpu|cuda|auto] [--threads N] [--ctx N] [--mode full|window] ...
//
// Prints "ra-serve-inproc: listening on http://H:P" on stderr once it listens (and writes P to
// --port-file), loads the model (/health answers 503 meanwhile), and serves until SIGINT, SIGTERM or SIGHUP.
// A model that fails to load is an error with exit code 1.

#include <CLI/CLI.hpp>

#include <cstdio>

#include "common/error.h"
#include "gpu_worker/serve/inproc_setup.h"
#include "gpu_worker/serve/serve_process.h"
#include "gpu_worker/serve/server.h"

int main(int argc, char** argv) {
  using namespace ra;
  using namespace ra::serve;
  CLI::App app{"Serve a model over OpenAI's HTTP API, on a backend in this process"};
  ServeOptions serve;
  InprocModelOptions model;
  std::string geometry, backend = "auto", port_file;
  app.add_option("--model", model.model, "Hugging Face checkpoint directory or llama2.c .bin (default: the demo model)");
  app.add_option("--geometry", geometry, "demo: the embedded demo model (the default without --model)")
      ->check(CLI::IsMember({"demo"}));
  app.add_option("--tokenizer", model.tokenizer, "bytes, or a tokenizer file (default: found beside the model)");
  app.add_option("--name", model.name, "The model id clients name (default: the model's folder name, or demo)");
  add_server_flags(app, serve, port_file);
  app.add_option("--backend", backend, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--threads", model.threads, "Compute threads (0: every core)")->capture_default_str();
  app.add_option("--ctx", model.max_positions, "KV cache capacity in tokens (0: the model's maximum)")
      ->capture_default_str();
  app.add_option("--mode", model.mode, "Attention mode: full or window")->check(CLI::IsMember({"full", "window"}))
      ->capture_default_str();
  app.add_option("--sinks", model.sinks, "Window mode: sink tokens")->capture_default_str();
  app.add_option("--window", model.window, "Window mode: window tokens")->capture_default_str();
  app.add_option("--prefill-piece", model.prefill_piece, "Prompt tokens per forward call (cancel checks between)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const sigset_t stop_signals = block_stop_signals();
  try {
    model.backend = parse_backend_kind(backend);
    Server server(serve);
    const int port = server.start();
    std::fprintf(stderr, "ra-serve-inproc: listening on http://%s:%d\n", serve.host.c_str(), port);
    write_port_file(port_file, port);
    try {
      ServedModel served = load_inproc_model(model);
      const EngineInfo& info = served.engine->info();
      std::fprintf(stderr, "ra-serve-inproc: serving '%s' (%s backend, mode %s, %lld positions, chat: %s)\n",
                   served.name.c_str(), info.backend.c_str(), info.mode.c_str(),
                   static_cast<long long>(info.max_positions),
                   served.chat.chat ? std::string(name(served.chat.chat->layout)).c_str()
                                    : served.chat.unavailable.c_str());
      server.attach(std::move(served));
    } catch (const Error& e) {
      server.fail_loading(e.what());
      std::fprintf(stderr, "error: %s\n", e.what());
      server.stop();
      return 1;
    }
    wait_for_stop_signal(stop_signals);
    std::fprintf(stderr, "ra-serve-inproc: stopping\n");
    server.stop();
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
