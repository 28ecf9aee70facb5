#include "bench/accuracy/bench_accuracy_command.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/accuracy/accuracy_eval.h"
#include "bench/report/bench_report.h"
#include "common/error.h"
#include "launcher/config/run_config.h"
#include "launcher/ranks/model_setup.h"

namespace ra {
namespace {

struct BenchAccuracyArgs {
  bench::AccuracySpec spec;
  std::string model;
  std::vector<std::string> modes = {"full", "window", "flat", "ivf", "hnsw", "retrieval"};
  std::string backend = "auto";
  std::string json_out, plot_out;
};

const std::vector<bench::Column> kColumns = {
    {"length", "length", 7},
    {"mode", "mode", 10, true, "", "  "},
    {"scan_target", "budget", 7, false, ".3f"},
    {"scanned", "scanned", 8, false, ".4f"},
    {"scanned_needle", "sc.needle", 9, false, ".4f"},
    {"scanned_text", "sc.text", 8, false, ".4f"},
    {"needle_correct", "facts", 6},
    {"needle_accuracy", "needle", 7, false, ".3f"},
    {"needle_digit_accuracy", "digits", 7, false, ".3f"},
    {"agreement", "top1 agree", 10, false, ".4f"},
    {"kl_mean", "KL(full||m)", 11, false, ".5f"},
    {"recall", "recall@k", 8, false, ".4f"},
    {"ms_per_step", "ms/step", 8, false, ".2f"},
};

int run_bench_accuracy(BenchAccuracyArgs& a) {
  RunConfig& c = a.spec.config;
  c.model = a.model;
  c.backend = parse_backend_kind(a.backend);
  a.spec.modes.clear();
  for (const std::string& m : a.modes) a.spec.modes.push_back(parse_mode(m));
  c.mode = AttentionMode::kFlat;  // validated as a mode with retrievers: every pool needs them
  validate(c);
  const LoadedModel loaded = load_model_for(c);
  bench::JsonLines json(a.json_out);
  RA_REQUIRE(json.good(), "--json {}: cannot open for writing", a.json_out);
  std::fprintf(stderr, "ra bench accuracy: model %s, %s backend, sinks %lld + window %lld, top-k %d, %d retrievers per mode\n",
               loaded.model.source.c_str(), std::string(name(resolve_backend_kind(c.backend))).c_str(),
               static_cast<long long>(c.sinks), static_cast<long long>(c.window), c.index.top_k, c.retrievers);
  std::printf("%s\n", bench::table_header(kColumns).c_str());
  bench::run_accuracy(a.spec, loaded, [&](const nlohmann::json& row) {
    json.write(row);
    std::printf("%s\n", bench::table_row(kColumns, row).c_str());
    std::fflush(stdout);
  });
  json.close();
  RA_REQUIRE(!json.bad(), "--json {}: write failed", a.json_out);
  if (!a.plot_out.empty()) {
    RA_REQUIRE(!a.json_out.empty(), "--plot needs --json (the plot is drawn from its rows)");
    bench::plot_rows(a.json_out, a.plot_out,
                     fmt::format("ra bench accuracy: {}, {} backend, sinks {} + window {}, top-k {}, {} prompts x {} facts",
                                 loaded.model.source, name(resolve_backend_kind(c.backend)), c.sinks, c.window,
                                 c.index.top_k, a.spec.prompts, a.spec.facts));
  }
  return 0;
}

}  // namespace

void add_bench_accuracy_command(CLI::App& bench) {
  auto a = std::make_shared<BenchAccuracyArgs>();
  bench::AccuracySpec& s = a->spec;
  s.config.retrievers = 2;
  CLI::App* cmd = bench.add_subcommand(
      "accuracy", "Needle accuracy, agreement and KL against full attention, and recall, of every mode at matched "
                  "fractions of keys scanned");
  cmd->add_option("--model", a->model, "Checkpoint (e.g. ../shared/models/needle-byte-13m)")->required();
  cmd->add_option("--lengths", s.lengths, "Context lengths in tokens")->delimiter(',')->capture_default_str();
  cmd->add_option("--modes", a->modes, "Modes: full, window, flat, ivf, hnsw, retrieval")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--scan", s.scan,
                  "Budgets: fractions of the offloaded keys a search scores (ivf, hnsw, retrieval; fitted per shard)")
      ->delimiter(',');
  cmd->add_option("--prompts", s.prompts, "Needle prompts per length (seeds --seed, --seed + 1, ...)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--facts", s.facts, "Facts per needle prompt, each asked")->capture_default_str()->check(CLI::Range(1, 16));
  cmd->add_option("--seed", s.seed, "First needle prompt's seed")->capture_default_str();
  cmd->add_option("--haystack", s.haystack, "Folder whose *.h files make the needle haystack")->capture_default_str();
  cmd->add_option("--text", s.text_file, "Real text for top-1 agreement and KL against full attention (e.g. "
                                         "/usr/include/sqlite3.h, public domain, from Debian's libsqlite3-dev)");
  cmd->add_option("--text-positions", s.text_positions, "Decode steps over the text past the prompt")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--backend", a->backend, "cuda, cpu or auto")->capture_default_str()->check(
      CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--sinks", s.config.sinks, "Sink tokens on the worker")->capture_default_str();
  cmd->add_option("--window", s.config.window, "Window tokens on the worker")->capture_default_str();
  cmd->add_option("--top-k", s.config.index.top_k, "Keys retrieved per query head and step")->capture_default_str();
  cmd->add_option("--ef", s.config.index.ef, "Rows without a budget: graph / HNSW beam (0: the index default)");
  cmd->add_option("--nprobe", s.config.index.nprobe, "Rows without a budget: IVF lists probed (0: the default)");
  cmd->add_option("--retrievers", s.config.retrievers, "Retrievers per mode (threads of this process)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--retriever-threads", s.config.retriever_threads, "Threads per retriever (0: cores / retrievers)");
  cmd->add_option("--threads", s.config.worker_threads, "Worker backend threads (0: all cores)");
  cmd->add_option("--kv-dtype", s.config.kv_dtype,
                  "The retrievers' KV storage: auto (the checkpoint's), bf16, f16, f32, int8, or key/value apart")
      ->capture_default_str();
  cmd->add_option("--graph-heads-per-search", s.config.index.graph_heads_per_search,
                  "Retrieval: 0 = a graph per query head, N = a graph per kv head searched by N heads at once")
      ->capture_default_str();
  cmd->add_option("--graph-connect-max-in-degree", s.config.index.graph_connect_max_in_degree,
                  "Retrieval: only keys with at most N in-edges after the projection search for connectivity edges "
                  "(0: the keys no training list reached); -1 = every key")
      ->capture_default_str();
  cmd->add_option("--time-limit", s.time_limit_s,
                  "Seconds after which no further needle prompt starts (0: none); the text runs first, rows report "
                  "the prompts done, and runs over disjoint --seed ranges merge with bench/accuracy/merge_rows.py")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("!--no-recall", s.audit_recall, "Skip the recall audit (a full scan per query head and step)");
  cmd->add_option("--json", a->json_out, "Write one JSON object per row to this file");
  cmd->add_option("--plot", a->plot_out, "Needle accuracy and KL against keys scanned, a panel per length (needs --json)");
  cmd->callback([a] {
    const int rc = run_bench_accuracy(*a);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ra
