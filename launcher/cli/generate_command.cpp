#include "launcher/cli/generate_command.h"

#include <omp.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "common/cli_exit.h"
#include "common/error.h"
#include "gpu_worker/decode/generator.h"
#include "launcher/control/job_launcher.h"
#include "launcher/ranks/model_setup.h"
#include "launcher/plan/mpirun_command.h"
#include "launcher/plan/numa_topology.h"
#include "launcher/plan/run_plan.h"
#include "launcher/ranks/run_report.h"

namespace ra {
namespace {

// Modes full and window: no retrievers, so no other process either.
int run_in_process(const RunConfig& c) {
  if (c.worker_threads > 0) omp_set_num_threads(c.worker_threads);
  const LoadedModel loaded = load_model_for(c);
  const Model& model = loaded.model;
  const ModelConfig& mc = model.config;
  const std::vector<int32_t> prompt = prompt_tokens(loaded, prompt_text_for(c, loaded));

  BackendOptions options;
  options.max_positions =
      std::min<int64_t>(mc.max_position_embeddings, static_cast<int64_t>(prompt.size()) + c.max_new_tokens);
  options.threads = c.worker_threads;
  options.static_set = {c.mode == AttentionMode::kWindow, c.sinks, c.window, nullptr};
  const std::unique_ptr<Backend> backend = make_backend(c.backend, model, options);

  std::fprintf(stderr, "model: %s (%s)\ntokenizer: %s\n", model.source.c_str(), describe(mc).c_str(),
               loaded.tokenizer->name().c_str());
  GenerateOptions gen = generate_options_for(c);
  gen.on_progress = progress_printer(stderr, nullptr);
  const GenerateStats stats = generate(*backend, *loaded.tokenizer, prompt, gen, write_generated_text);
  print_run_stats(stderr, *backend, c, stats, nullptr);
  if (!c.report_json.empty()) write_run_report_json(c.report_json, *backend, c, stats, nullptr);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto flags = std::make_shared<RunConfigFlags>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Decode a prompt and print the generated text to stdout. Modes full and window run in this process; "
      "flat, ivf, hnsw and retrieval start CPU retriever ranks under mpirun");
  add_run_config_options(*cmd, *flags);
  auto write_plan = std::make_shared<std::string>();
  cmd->add_option("--write-plan", *write_plan,
                  "With --dry-run: also write the plan file the ranks would read (for starting ranks by hand)");
  on_run_exit_with(*cmd, [flags, write_plan] {
    return run_generate(resolve_run_config(*flags), flags->print_config, flags->dry_run, *write_plan);
  });
}

int run_generate(const RunConfig& c, bool print_config, bool dry_run, const std::string& write_plan) {
  if (print_config) {
    std::fputs(to_yaml(c).c_str(), stdout);
    return 0;
  }
  if (!needs_retrievers(c.mode) && !dry_run) return run_in_process(c);

  const NumaTopology topology = detect_numa_topology();
  const std::vector<HostSlots> hosts = c.hostfile.empty() ? std::vector<HostSlots>{} : read_hostfile(c.hostfile);
  const RunPlan plan = make_run_plan(c, geometry_for(c, random_weights_on_gpu(c)), topology, hosts);
  if (dry_run) {
    if (!write_plan.empty()) {
      std::ofstream out(write_plan);
      out << plan_to_json(plan).dump(2) << "\n";
      RA_REQUIRE(out.good(), "--write-plan {}: cannot write it", write_plan);
    }
    std::fputs(describe_plan(plan).c_str(), stdout);
    std::fprintf(stdout, "machine: %s\n", describe(topology).c_str());
    if (!needs_retrievers(c.mode)) {
      std::fprintf(stdout, "mode %s runs in this process: no mpirun\n", std::string(name(c.mode)).c_str());
      return 0;
    }
    const PipelineExecutables exes = find_pipeline_executables();
    const std::vector<std::string> argv = job_mpirun_argv(plan, topology, worker_on_gpu(c), "<plan.json>", exes);
    std::fprintf(stdout, "%s\n", shell_quote_join(argv).c_str());
    return 0;
  }
  return launch_job(plan, topology, worker_on_gpu(c));
}

}  // namespace ra
