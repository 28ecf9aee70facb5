#include "bench/retrieval/bench_retrieval_command.h"

#include <nlohmann/json.hpp>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>

#include "bench/report/bench_report.h"
#include "bench/retrieval/retrieval_eval.h"
#include "common/cli_exit.h"
#include "cpu_retriever/graph_build.h"
#include "common/error.h"
#include "common/npy.h"

namespace ra {
namespace {

namespace fs = std::filesystem;

// The flags that are not fields of the benchmark's own config (RetrievalBenchConfig, which the rest
// bind to directly).
struct BenchRetrievalArgs {
  std::string qkv;
  std::string json_out;
  std::string plot_out;
  std::vector<int64_t> layers;
  std::string graph_occlusion = "l2";
  std::string key_dtype = "f32";
  retriever::RetrievalBenchConfig config;
};

// The stdout table, one row per (index, knob).
const std::vector<bench::Column> kColumns = {
    {"index", "index", 9, true},           {"knob", "knob", 12, true},
    {"recall", "recall", 8, false, ".4f"}, {"worst_head_recall", "worst", 8, false, ".4f"},
    {"scanned", "scanned", 9, false, ".4f"}, {"us_per_query", "us/query", 10, false, ".1f"},
    {"build_s", "build_s", 9, false, ".3f"}, {"index_bytes", "index_bytes", 12, false, ".0f"},
    {"attn_rel_err", "attn_err", 10, false, ".5f"},
};

int64_t meta_int(const nlohmann::json& meta, const char* key, const fs::path& path) {
  const auto it = meta.find(key);
  RA_REQUIRE(it != meta.end() && it->is_number_integer() && it->get<int64_t>() > 0,
             "{}: field '{}' is missing or not a positive integer", path.string(), key);
  return it->get<int64_t>();
}

// Reads one .npy and checks its shape against what meta.json implies.
NpyArray read_checked(const fs::path& path, std::vector<int64_t> want) {
  RA_REQUIRE(fs::exists(path), "{}: missing (meta.json lists more layers than the dump holds)", path.string());
  NpyArray a = read_npy_f32(path);
  RA_REQUIRE(a.shape == want, "{}: shape ({}) does not match meta.json, which implies ({})", path.string(),
             fmt::join(a.shape, ", "), fmt::join(want, ", "));
  return a;
}

int run_bench_retrieval(const BenchRetrievalArgs& args) {
  const auto wall_start = std::chrono::steady_clock::now();
  const fs::path dir = args.qkv;
  const fs::path meta_path = dir / "meta.json";
  RA_REQUIRE(fs::exists(meta_path), "--qkv {}: no meta.json (is this a `ra dump-qkv` directory?)", dir.string());
  nlohmann::json meta;
  try {
    std::ifstream in(meta_path);
    meta = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    raise("{}: invalid JSON: {}", meta_path.string(), e.what());
  }
  const int64_t n_layers = meta_int(meta, "n_layers", meta_path);
  const int64_t n_heads = meta_int(meta, "n_heads", meta_path);
  const int64_t n_kv = meta_int(meta, "n_kv_heads", meta_path);
  const int64_t head_dim = meta_int(meta, "head_dim", meta_path);
  const int64_t tokens = meta_int(meta, "tokens", meta_path);
  RA_REQUIRE(meta.contains("scale") && meta["scale"].is_number() && meta["scale"].get<double>() > 0,
             "{}: field 'scale' is missing or not a positive number", meta_path.string());
  const float scale = meta["scale"].get<float>();
  for (int64_t h : args.config.heads) RA_REQUIRE(h >= 0 && h < n_heads, "--head {} is outside [0, {})", h, n_heads);
  for (int64_t l : args.layers) RA_REQUIRE(l >= 0 && l < n_layers, "--layer {} is outside [0, {})", l, n_layers);

  retriever::RetrievalBenchConfig config = args.config;
  config.graph_l2_occlusion = args.graph_occlusion == "l2";
  config.key_dtype = args.key_dtype == "bf16"  ? retriever::KvDtype::kBF16
                     : args.key_dtype == "f16" ? retriever::KvDtype::kF16
                                               : retriever::KvDtype::kF32;

  std::map<std::string, retriever::RowAccumulator> rows;
  std::vector<std::string> order;
  for (int64_t l = 0; l < n_layers; ++l) {
    if (!args.layers.empty() && std::find(args.layers.begin(), args.layers.end(), l) == args.layers.end()) continue;
    const auto layer_start = std::chrono::steady_clock::now();
    const NpyArray q = read_checked(dir / fmt::format("q_l{}.npy", l), {n_heads, tokens, head_dim});
    const NpyArray k = read_checked(dir / fmt::format("k_l{}.npy", l), {n_kv, tokens, head_dim});
    const NpyArray v = read_checked(dir / fmt::format("v_l{}.npy", l), {n_kv, tokens, head_dim});
    retriever::LayerQkv layer{l, n_heads, n_kv, head_dim, tokens, scale, q.data.data(), k.data.data(), v.data.data()};
    retriever::run_retrieval_layer(layer, config, rows, order);
    std::fprintf(stderr, "layer %lld done in %.1f s\n", static_cast<long long>(l),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - layer_start).count());
  }

  bench::JsonLines json(args.json_out);
  RA_REQUIRE(json.good(), "--json {}: cannot write", args.json_out);
  std::printf("%s\n", bench::table_header(kColumns).c_str());
  for (const auto& key : order) {
    const std::string line = retriever::row_json(rows.at(key));
    json.write(line);
    std::printf("%s\n", bench::table_row(kColumns, nlohmann::json::parse(line)).c_str());
  }
  std::printf("\n%s", retriever::layer_comparison_table(rows, order, {0.90, 0.95}).c_str());
  json.close();
  RA_REQUIRE(!json.bad(), "--json {}: write failed", args.json_out);
  if (!args.plot_out.empty()) {
    RA_REQUIRE(!args.json_out.empty(), "--plot needs --json (the plot is drawn from the JSON rows)");
    bench::plot_rows(args.json_out, args.plot_out);
  }
  if (const retriever::GraphBuildSteps steps = retriever::graph_build_steps(); steps.builds > 0) {
    std::fprintf(stderr, "graph build steps: %s\n", retriever::describe_graph_build_steps(steps).c_str());
  }
  std::fprintf(stderr, "bench retrieval: %zu rows, N=%lld keys, T=%lld tokens, k=%d, %.1f s\n", order.size(),
               static_cast<long long>(config.prefill), static_cast<long long>(tokens), config.k,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count());
  return 0;
}

}  // namespace

void add_bench_retrieval_command(CLI::App& bench) {
  auto args = std::make_shared<BenchRetrievalArgs>();
  CLI::App* cmd = bench.add_subcommand("retrieval", "Recall vs keys scanned of every key index on dumped q/k/v");
  cmd->add_option("--qkv", args->qkv, "Directory written by `ra dump-qkv`")->required();
  cmd->add_option("--prefill", args->config.prefill, "N: keys and training queries from positions [0, N)")->required();
  cmd->add_option("--k", args->config.k, "Recall@k and the number of keys retrieved")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--json", args->json_out, "Write one JSON object per row to this file");
  cmd->add_option("--plot", args->plot_out, "Plot recall against scanned fraction to this PNG (needs --json)");
  cmd->add_option("--threads", args->config.threads, "Threads for builds and searches (default: all cores)");
  cmd->add_option("--layer", args->layers, "Only these layers (repeatable)");
  cmd->add_option("--head", args->config.heads, "Only these query heads (repeatable)");
  cmd->add_option("--indexes", args->config.indexes, "Index kinds: flat ivf hnsw graph graph_kv graph_kv_int8 graph_group "
                  "(graph_kv_int8: the kv head's graph walked on its 8-bit navigation copy)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"flat", "ivf", "hnsw", "graph", "graph_kv", "graph_kv_int8", "graph_group"}));
  cmd->add_option("--train-queries", args->config.train_queries, "Graph training queries per head (0: all N)")->capture_default_str();
  cmd->add_option("--test-queries", args->config.max_test_queries, "At most this many test queries per head, evenly spaced over [N, T) (0: all T-N)")
      ->capture_default_str();
  cmd->add_option("--graph-M", args->config.graph_M, "Graph max degree")->capture_default_str();
  cmd->add_option("--graph-occlusion", args->graph_occlusion, "Graph pruning geometry between keys: ip or l2")
      ->capture_default_str()
      ->check(CLI::IsMember({"ip", "l2"}));
  cmd->add_flag("--graph-fill", args->config.graph_fill, "Fill pruned neighbour lists back up to M");
  cmd->add_option("--graph-degree-cap", args->config.graph_degree_cap, "Max degree after connectivity edges (0: 2M)")
      ->capture_default_str();
  cmd->add_option("--graph-entries", args->config.graph_entry_samples,
                  "Extra search entries, evenly spaced over the keys (each costs one distance per search)")
      ->capture_default_str();
  cmd->add_option("--graph-pivots", args->config.graph_pivots,
                  "Projection pivots per training list: its best key links to the whole list, the next P-1 to its head (1: RoarGraph)")
      ->capture_default_str();
  cmd->add_option("--graph-Kq", args->config.graph_Kq, "Neighbours per training query projected into the graph")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--graph-append", args->config.graph_append,
                  "Also build each graph on the first N-A keys, append the last A (rows graph_tail) and merge "
                  "them into the graph (rows graph_merged; graph_merged_answers: the queries' decode answers given)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--graph-warm", args->config.graph_warm,
                  "H > 0: also search every test position in decode order, each seeded with the answers of the "
                  "previous H positions (rows graph_warm)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--graph-key-lists", args->config.graph_key_lists_stride,
                  "Every S-th key also trains the graph as a query (its own top-Kq list); 0: prefill queries only")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--expand", args->config.graph_expand,
                  "Graph searches expand this many nodes per step (1: strictly best-first; up to 4)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4));
  cmd->add_option("--key-dtype", args->key_dtype,
                  "Dtype the indexes score the keys in: f32 (the dump), or bf16 / f16 as the retriever's KV store "
                  "holds them (recall stays against the float32 top-k)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--graph-repair-ef", args->config.graph_repair_ef,
                  "Query-guided repair: training queries search with this beam and link the keys they miss (0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--graph-repair-stride", args->config.graph_repair_stride, "Repair with every S-th training query")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--graph-final-prune", args->config.graph_final_prune,
                  "Re-prune every neighbour list by the occlusion rule after the connectivity edges (0: off)")
      ->capture_default_str();
  cmd->add_option("--graph-pivot-span", args->config.graph_pivot_span,
                  "Length of that head for pivots after the first (0: the whole list)")
      ->capture_default_str();
  cmd->add_option("--graph-ef-construction", args->config.graph_ef_construction, "Beam of the connectivity self-searches")
      ->capture_default_str();
  cmd->add_option("--graph-connect-query-lists", args->config.graph_connect_query_lists,
                  "Connecting keys take the lists of the T training queries that score them best instead of searching (0: search)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--graph-connect-max-in-degree", args->config.graph_connect_max_in_degree,
                  "Connectivity self-searches only for keys with at most this many in-edges after the projection "
                  "(0: keys no training list reached; -1: every key)")
      ->capture_default_str();
  on_run_exit_with(*cmd, [args] {
    if (args->config.threads > 0) omp_set_num_threads(args->config.threads);
    return run_bench_retrieval(*args);
  });
}

}  // namespace ra
