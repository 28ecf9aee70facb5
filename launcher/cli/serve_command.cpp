#include "launcher/cli/serve_command.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "common/cli_exit.h"
#include "common/error.h"
#include "gpu_worker/serve/inproc_engine.h"
#include "gpu_worker/serve/inproc_setup.h"
#include "gpu_worker/serve/serve_process.h"
#include "gpu_worker/serve/serve_spec.h"
#include "gpu_worker/serve/server.h"
#include "launcher/control/child_process.h"
#include "launcher/control/job_launcher.h"
#include "launcher/plan/hostfile.h"
#include "launcher/plan/mpirun_command.h"
#include "launcher/plan/numa_topology.h"
#include "launcher/plan/run_plan.h"
#include "launcher/ranks/model_setup.h"

namespace ra {
namespace {

using serve::ServeSpec;

void add_serve_options(CLI::App& cmd, ServeSpec& s) {
  serve::add_server_flags(cmd, s.server, s.port_file);
  cmd.add_option("--name", s.name, "The model id clients name (default: the checkpoint folder's name, or demo)");
  cmd.add_option("--ctx", s.ctx, "KV cache capacity in tokens (0: the model's max_position_embeddings)")
      ->capture_default_str();
  cmd.add_option("--load", s.load, "A context saved by `ra prefill --save DIR`: restored and registered at start");
  cmd.add_option("--exit-grace", s.exit_grace_seconds,
                 "Once a retriever failed: seconds /health answers 503 before the server exits 1")
      ->capture_default_str();
}

// Modes full and window: the model and its engine in this process.
std::unique_ptr<serve::InprocEngine> make_engine_in_process(const RunConfig& c, const ServeSpec& spec,
                                                            LoadedModel& loaded) {
  serve::InprocModelOptions o;
  o.backend = c.backend;
  o.threads = c.worker_threads;
  o.max_positions = spec.ctx;
  o.mode = std::string(name(c.mode));
  o.sinks = c.sinks;
  o.window = c.window;
  return serve::make_inproc_engine(std::make_unique<Model>(std::move(loaded.model)), o);
}

int serve_in_process(const RunConfig& c, const ServeSpec& spec) {
  const sigset_t stop_signals = serve::block_stop_signals();
  serve::Server server(spec.server);
  const int port = server.start();
  std::fprintf(stderr, "ra serve: listening on http://%s:%d\n", spec.server.host.c_str(), port);
  serve::write_port_file(spec.port_file, port);
  try {
    LoadedModel loaded = load_model_for(c);
    const ModelConfig mc = loaded.model.config;
    std::unique_ptr<serve::InprocEngine> engine = make_engine_in_process(c, spec, loaded);
    if (!spec.load.empty()) {
      std::vector<int32_t> tokens = engine->load(spec.load);
      const size_t n = tokens.size();
      const std::string id = server.add_context(std::move(tokens), 0.0);
      std::fprintf(stderr, "ra serve: loaded the context %s (%zu tokens) from %s\n", id.c_str(), n, spec.load.c_str());
    }
    serve::ServedModel served =
        serve::make_served_model(std::move(engine), std::move(loaded.tokenizer), mc, c.model, c.tokenizer, spec.name);
    std::fprintf(stderr, "ra serve: serving '%s' in this process (mode %s)\n", served.name.c_str(),
                 std::string(name(c.mode)).c_str());
    server.attach(std::move(served));
  } catch (const Error& e) {
    server.fail_loading(e.what());
    server.stop();
    throw;
  }
  const int sig = serve::wait_for_stop_signal(stop_signals);
  std::fprintf(stderr, "ra serve: signal %d: stopping\n", sig);
  server.stop();
  return 0;
}

int prefill_in_process(const RunConfig& c, const ServeSpec& spec) {
  LoadedModel loaded = load_model_for(c);
  const std::vector<int32_t> document = prompt_tokens(loaded, prompt_text_for(c, loaded));
  std::unique_ptr<serve::InprocEngine> engine = make_engine_in_process(c, spec, loaded);
  engine->prefill_and_save(document, spec.save);
  std::fprintf(stderr, "ra prefill: %zu tokens prefilled and saved to %s\n", document.size(), spec.save.c_str());
  return 0;
}

// Modes with retrievers: generate's job, with the serve spec handed to the worker rank. A job that fails
// (a rank died or stopped answering: the server exits non-zero) starts again, `restarts` times at most,
// on the same port (contexts in memory are lost; --load loads its save again); a job the user stopped
// (SIGINT, SIGTERM, SIGHUP to `ra`) does not.
int launch_serving_job(RunConfig c, const ServeSpec& spec, bool dry_run, int restarts) {
  const std::string text = serve::to_json(spec).dump();
  RA_REQUIRE(setenv(serve::kServeSpecEnv, text.c_str(), 1) == 0, "cannot set {}", serve::kServeSpecEnv);
  c.mpirun_extra_args.insert(c.mpirun_extra_args.end(), {"-x", serve::kServeSpecEnv});
  const NumaTopology topology = detect_numa_topology();
  const std::vector<HostSlots> hosts = c.hostfile.empty() ? std::vector<HostSlots>{} : read_hostfile(c.hostfile);
  const RunPlan plan = make_run_plan(c, geometry_for(c), topology, hosts);
  if (dry_run) {
    std::fputs(describe_plan(plan).c_str(), stdout);
    std::fprintf(stdout, "machine: %s\n%s=%s\n", describe(topology).c_str(), serve::kServeSpecEnv, text.c_str());
    const PipelineExecutables exes = find_pipeline_executables();
    const std::vector<std::string> argv = job_mpirun_argv(plan, topology, worker_on_gpu(c), "<plan.json>", exes);
    std::fprintf(stdout, "%s\n", shell_quote_join(argv).c_str());
    return 0;
  }
  int code = launch_job(plan, topology, worker_on_gpu(c));
  for (int attempt = 1; attempt <= restarts && code != 0 && last_forwarded_stop_signal() == 0; ++attempt) {
    std::fprintf(stderr, "ra serve: the job exited with code %d; starting it again (restart %d of %d)\n", code, attempt,
                 restarts);
    // A new job id.
    code = launch_job(make_run_plan(c, geometry_for(c), topology, hosts), topology, worker_on_gpu(c));
  }
  return code;
}

int run(const RunConfigFlags& flags, ServeSpec spec, int restarts) {
  const RunConfig c = resolve_run_config(flags);
  if (flags.print_config) {
    std::fputs(to_yaml(c).c_str(), stdout);
    return 0;
  }
  if (needs_retrievers(c.mode)) return launch_serving_job(c, spec, flags.dry_run, restarts);
  if (flags.dry_run) {
    std::fprintf(stdout, "mode %s runs in this process: no mpirun\n", std::string(name(c.mode)).c_str());
    return 0;
  }
  return spec.action == "serve" ? serve_in_process(c, spec) : prefill_in_process(c, spec);
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto flags = std::make_shared<RunConfigFlags>();
  auto spec = std::make_shared<ServeSpec>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve the model over OpenAI's HTTP API (/v1/completions, /v1/chat/completions, /v1/contexts, /health, "
      "/metrics). Modes flat, ivf, hnsw and retrieval start the retriever ranks under mpirun and serve from the "
      "worker rank; full and window run in this process");
  add_run_config_options(*cmd, *flags);
  add_serve_options(*cmd, *spec);
  auto restarts = std::make_shared<int>(0);
  cmd->add_option("--restart", *restarts,
                  "Modes with retrievers: start the job again, up to this many times, when it fails (a rank died or "
                  "stopped answering); 0: exit non-zero")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  on_run_exit_with(*cmd, [flags, spec, restarts] { return run(*flags, *spec, *restarts); });
}

void add_prefill_command(CLI::App& app) {
  auto flags = std::make_shared<RunConfigFlags>();
  auto spec = std::make_shared<ServeSpec>();
  spec->action = "prefill";
  CLI::App* cmd = app.add_subcommand(
      "prefill",
      "Prefill a document (--prompt / --prompt-file) as a context and save it (--save DIR): the worker's KV and "
      "every layer's offloaded rows, with a manifest and checksums, for `ra serve --load DIR`");
  add_run_config_options(*cmd, *flags);
  cmd->add_option("--save", spec->save, "Folder to write the context to")->required();
  cmd->add_option("--ctx", spec->ctx, "KV cache capacity in tokens (0: the model's max_position_embeddings)")
      ->capture_default_str();
  on_run_exit_with(*cmd, [flags, spec] { return run(*flags, *spec, 0); });
}

}  // namespace ra
