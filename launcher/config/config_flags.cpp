// The command-line side of the run config: one flag per common key, and the precedence
// defaults < --config file < the flags given.

#include <string>
#include <vector>

#include "launcher/config/config_schema.h"
#include "launcher/config/run_config.h"

namespace ra {

using config::kBackends;
using config::kModes;
using config::kTransports;

void add_run_config_options(CLI::App& cmd, RunConfigFlags& flags) {
  RunConfig& v = flags.values;
  auto given = [&flags](CLI::Option* option, void (*apply)(RunConfig&, const RunConfigFlags&)) {
    flags.given.push_back({option, apply});
    return option;
  };
  cmd.add_option("--config", flags.config_path,
                 "Run configuration file (.yaml, .yml or .json); flags given here override its keys");
  cmd.add_flag("--print-config", flags.print_config, "Print the effective configuration as YAML and exit");
  cmd.add_flag("--dry-run", flags.dry_run, "Print the plan and the mpirun command line; start nothing");

  std::vector<std::string> mode_names, transport_names;
  for (const auto& [n, m] : kModes) mode_names.emplace_back(n);
  for (const auto& [n, t] : kTransports) transport_names.emplace_back(n);
  given(cmd.add_option("--mode", flags.mode, "Attention mode (default: full)")->check(CLI::IsMember(mode_names)),
        [](RunConfig& c, const RunConfigFlags& f) { c.mode = parse_mode(f.mode); });
  given(cmd.add_option("--transport", flags.transport, "Worker <-> retriever transport (default: shm)")
            ->check(CLI::IsMember(transport_names)),
        [](RunConfig& c, const RunConfigFlags& f) { c.transport = parse_transport(f.transport); });
  given(cmd.add_option("--retrievers", v.retrievers, "CPU retriever ranks")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.retrievers = f.values.retrievers; });
  given(cmd.add_option("--hostfile", v.hostfile, "Open MPI hostfile (default: this machine only)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.hostfile = f.values.hostfile; });
  given(cmd.add_option("--sinks", v.sinks, "First tokens kept on the GPU")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.sinks = f.values.sinks; });
  given(cmd.add_option("--window", v.window, "Last tokens kept on the GPU")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.window = f.values.window; });
  given(cmd.add_option("--top-k", v.index.top_k, "Keys retrieved per query head and step")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.index.top_k = f.values.index.top_k; });
  given(cmd.add_option("--ef", v.index.ef, "Graph/HNSW search pool (0 = index default)")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.index.ef = f.values.index.ef; });
  given(cmd.add_option("--nprobe", v.index.nprobe, "IVF lists probed (0 = index default)")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.index.nprobe = f.values.index.nprobe; });
  given(cmd.add_option("--scan-fraction", v.index.scan_fraction,
                       "ivf/hnsw/retrieval: ef or nprobe chosen per shard to scan this fraction of the keys (0 = off)")
            ->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.index.scan_fraction = f.values.index.scan_fraction; });
  given(cmd.add_option("--retriever-threads", v.retriever_threads,
                       "Threads per retriever (default: the cores of its NUMA node, shared)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.retriever_threads = f.values.retriever_threads; });
  given(cmd.add_option("--kv-dtype", v.kv_dtype,
                       "The retrievers' KV storage: auto (the checkpoint's), bf16, f16, f32, int8, or key/value "
                       "apart (e.g. int8/bf16)")
            ->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.kv_dtype = f.values.kv_dtype; });
  given(cmd.add_flag("--pin-retriever-threads,!--no-pin-retriever-threads", v.pin_retriever_threads,
                     "Pin each retriever's search threads to cores of its own (default: yes)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.pin_retriever_threads = f.values.pin_retriever_threads; });
  given(cmd.add_flag("--bind-worker,!--no-bind-worker", v.bind_worker,
                     "Bind the CUDA worker to its GPU's NUMA node (default: yes)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.bind_worker = f.values.bind_worker; });
  given(cmd.add_option("--liveness-timeout-ms", v.liveness_timeout_ms, "A silent peer is declared dead after this")
            ->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.liveness_timeout_ms = f.values.liveness_timeout_ms; });

  given(cmd.add_option("--model", v.model,
                       "Hugging Face checkpoint directory or llama2.c .bin file (default: an embedded "
                       "deterministic demo model)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.model = f.values.model; });
  given(cmd.add_option("--tokenizer", v.tokenizer, "'bytes', a llama2.c tokenizer .bin or a Hugging Face tokenizer.json (default: found beside the model)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.tokenizer = f.values.tokenizer; });
  CLI::Option* prompt = given(cmd.add_option("--prompt", v.prompt, "Prompt text"),
                              [](RunConfig& c, const RunConfigFlags& f) {
                                c.prompt = f.values.prompt;
                                c.prompt_file.clear();
                              });
  CLI::Option* prompt_file = given(cmd.add_option("--prompt-file", v.prompt_file, "Read the prompt from a file (raw bytes)"),
                                   [](RunConfig& c, const RunConfigFlags& f) {
                                     c.prompt_file = f.values.prompt_file;
                                     c.prompt.clear();
                                   });
  prompt->excludes(prompt_file);
  given(cmd.add_option("--max-new-tokens", v.max_new_tokens, "Tokens to generate")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.max_new_tokens = f.values.max_new_tokens; });
  given(cmd.add_flag("--ignore-eos", v.ignore_eos, "Keep generating past EOS up to --max-new-tokens"),
        [](RunConfig& c, const RunConfigFlags& f) { c.ignore_eos = f.values.ignore_eos; });
  given(cmd.add_option("--progress-every", v.progress_every,
                       "Print a progress line every N decode steps (0 = only the report at the end)")
            ->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.progress_every = f.values.progress_every; });
  given(cmd.add_option("--report-json", v.report_json,
                       "Write the run's figures (prefill, build tail, decode p50/p99, retrieval breakdown, peak "
                       "memory) to this JSON file at the end"),
        [](RunConfig& c, const RunConfigFlags& f) { c.report_json = f.values.report_json; });
  given(cmd.add_option("--temperature", v.temperature, "Sampling temperature; 0 is greedy")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.temperature = f.values.temperature; });
  given(cmd.add_option("--top-p", v.top_p, "Nucleus sampling mass in (0, 1]; 1 = off")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.top_p = f.values.top_p; });
  given(cmd.add_option("--seed", v.seed, "Sampling seed")->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.seed = f.values.seed; });
  std::vector<std::string> backend_names;
  for (const auto& [n, b] : kBackends) backend_names.emplace_back(n);
  given(cmd.add_option("--backend", flags.backend, "Compute backend: cuda, cpu or auto (default: auto = cuda when a "
                                                   "GPU is visible)")
            ->check(CLI::IsMember(backend_names)),
        [](RunConfig& c, const RunConfigFlags& f) { c.backend = parse_backend_kind(f.backend); });
  given(cmd.add_option("--threads", v.worker_threads, "Worker compute threads (default: all cores)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.worker_threads = f.values.worker_threads; });
  given(cmd.add_option("--synthetic-prompt-bytes", v.synthetic_prompt_bytes,
                       "Length of the synthetic prompt used when no prompt is given to the demo model")
            ->capture_default_str(),
        [](RunConfig& c, const RunConfigFlags& f) { c.synthetic_prompt_bytes = f.values.synthetic_prompt_bytes; });
}

RunConfig resolve_run_config(const RunConfigFlags& flags) {
  RunConfig c = flags.config_path.empty() ? RunConfig{} : load_run_config(flags.config_path);
  for (const RunConfigFlags::Given& g : flags.given) {
    if (g.option->count() > 0) g.apply(c, flags);
  }
  validate(c);
  return c;
}

}  // namespace ra
