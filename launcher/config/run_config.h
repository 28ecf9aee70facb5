#pragma once
// The typed run configuration: every knob of a run in one place, with its default and its doc
// (STYLE §12). Sources, lowest precedence first: the defaults below < a --config file (YAML or JSON) <
// command-line flags. `--print-config` prints the effective value of every field (to_yaml), and the
// plan file carries the config as JSON (to_json / run_config_from_json).
//
// Keys are spelled exactly like the fields: top-level fields, then `index.<field>` and
// `geometry.<field>` as nested maps. configs/README.md lists every key with its default and doc;
// run_config_fields() is the same list in code.
//
// This is the one public header of launcher/config/. Behind it, one file a concern:
//   defaults      the member initializers below; config_defaults.cpp renders them (run_config_fields)
//   schema        config_schema.h: the key table (key, doc, field) every other part walks; enum names
//   parsing       config_file.cpp (format, syntax errors), config_json.cpp, config_yaml.cpp,
//                 config_keys.cpp (unknown keys, sections), config_value.h (typed values, type errors)
//   validation    config_validate.cpp: errors naming the field and its value
//   flags         config_flags.cpp: the command-line flags and the precedence
// The plan made from a config is launcher/plan/run_plan.h.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/synthetic_model.h"

namespace ra {

enum class AttentionMode { kFull, kWindow, kFlat, kIvf, kHnsw, kRetrieval };  // DESIGN §5
enum class TransportKind { kShm, kUcx };
// What a decode search walks in the attention-aware graph: the keys themselves, or an 8-bit copy of
// them (cpu_retriever/navigation_keys.h: half the cache lines per key; the chosen keys are attended exactly).
enum class GraphNavigation { kExact, kInt8 };

// Per-request search knobs (they travel with each request, STYLE §7) and the retriever indexes' build
// parameters. 0 means "the index's own default" where stated.
struct IndexConfig {
  int top_k = 100;                    // keys retrieved per query head and step
  int ef = 0;                         // graph / HNSW search pool; 0 = index default (>= top_k)
  int nprobe = 0;                     // IVF lists probed; 0 = index default
  // > 0: ef / nprobe are chosen per retriever shard at the build so that each search scores this fraction of
  // its keys, measured on the head's prefill queries (cpu_retriever/scan_budget.h); ef and nprobe are then
  // not used. The cost scales with the context; `ra bench accuracy` compares modes this way.
  float scan_fraction = 0.0f;
  int graph_M = 32;                   // attention-aware graph: out-degree after pruning
  int graph_Kq = 100;                 // exact top-Kq keys per training query
  int graph_ef_construction = 64;     // pool of the connectivity beam search at build
  int graph_connect_max_in_degree = 0;  // connectivity searches only for keys with <= N in-edges; -1 = all
  int graph_connect_query_lists = 1;  // connecting keys take their best N training queries' lists; 0 = search
  int graph_max_train_queries = 0;    // training queries per head; 0 = all prefill queries
  int graph_warm_history = 2;         // seed each search with the head's last N answers; 0 = off
  int graph_key_lists_stride = 1;     // every N-th key also trains the graph as a query; 0 = off
  // 0: one graph per query head (the paper's layout); N >= 1: one graph per kv head, trained by all its
  // query heads, searched by N of them per traversal (N divides the GQA group size). 1: the same recall
  // as 0 on real heads, a quarter of the graphs to build (docs/retrieval.md, docs/perf.md).
  int graph_heads_per_search = 1;
  // With graph_heads_per_search 1: separate searches one retriever thread steps in turn, so each one's
  // memory loads overlap the others' scoring (at most the GQA group). 0 = as many as spread a layer's
  // query heads evenly over the retriever's threads; 1 = one search at a time.
  int graph_interleave = 0;
  // Layers a retriever builds at once during the prefill, each on retriever_threads / N threads. 1 (one
  // layer at a time on every thread) measured best: at 128K on the H100, 2 took the build tail from 27.8
  // to 65.1 s and 4 ran past 150 s (docs/perf.md, fourteenth round).
  int build_layers = 1;
  int graph_expand = 2;  // 2: 11% off the retrievers' part of a round trip at 128K, same recall (docs/perf.md)
  // With one graph per kv head: the queries an evicted token brings to the graph's merge, 0 = every
  // query head of the group, 1 = one, rotating over the group by position (a quarter of the merge's
  // query work at a group of 4; docs/perf.md ninth round).
  int graph_merge_queries = 1;
  GraphNavigation graph_navigation = GraphNavigation::kExact;
  int ivf_nlist = 0;                  // IVF lists; 0 = about 4*sqrt(n)
  int hnsw_M = 32;
  int hnsw_ef_construction = 64;

  bool operator==(const IndexConfig&) const = default;
};

struct RunConfig {
  std::string model;            // HF dir, llama2.c .bin, or "" = embedded demo model
  std::string tokenizer;        // "bytes", a llama2.c tokenizer .bin, or "" = found beside the model
  std::string prompt;           // "" and no prompt_file: the synthetic prompt (demo model) or BOS only
  std::string prompt_file;      // raw bytes; excludes prompt
  int64_t synthetic_prompt_bytes = 8192;
  int64_t max_new_tokens = 64;
  bool ignore_eos = false;  // generate max_new_tokens whatever is sampled (benchmarks, soak runs)
  int64_t progress_every = 0;  // > 0: a progress line on stderr every this many decode steps
  std::string report_json;     // "" = none; else the run's figures as JSON (run_report.h), written at the end
  float temperature = 0;        // 0 = greedy
  float top_p = 1;              // nucleus sampling mass; 1 = off
  uint64_t seed = 0;            // sampling seed
  AttentionMode mode = AttentionMode::kFull;
  int64_t sinks = 128;          // first tokens kept on the GPU
  int64_t window = 512;         // last tokens kept on the GPU
  IndexConfig index;
  TransportKind transport = TransportKind::kShm;
  int retrievers = 1;           // CPU retriever ranks (modes flat, ivf, hnsw, retrieval)
  std::string hostfile;         // Open MPI hostfile; empty = this machine only
  BackendKind backend = BackendKind::kAuto;  // the worker's compute backend
  int worker_threads = 0;       // 0 = all cores of the machine
  int retriever_threads = 0;    // 0 = the cores of the bound NUMA node / retrievers sharing it
  bool pin_retriever_threads = true;  // each retriever's search threads on cores of its own (thread_pinning.h)
  // The retrievers' KV storage: "auto" (the checkpoint's dtype), bf16, f16, f32, int8, or "<key>/<value>"
  // (e.g. int8/bf16); cpu_retriever/kv_dtype.h, parse_kv_dtypes.
  std::string kv_dtype = "auto";
  bool bind_worker = true;      // the CUDA worker's CPUs and memory on its GPU's NUMA node (worker_binding.h)
  int64_t liveness_timeout_ms = 1000;  // a silent peer is declared dead after this
  int64_t build_timeout_ms = 600000;   // the longest wait for an index build
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_extra_args;  // global mpirun options, before the app contexts
  // The embedded synthetic model's geometry, for runs with random weights at a real model's shape
  // (e.g. Llama-3-8B); the vocabulary is fixed by the byte tokenizer (258). Only valid when `model` is
  // empty; absent = the demo model's defaults.
  std::optional<SyntheticModelSpec> geometry;

  bool operator==(const RunConfig&) const = default;
};

// "full", "window", "flat", "ivf", "hnsw", "retrieval". parse_mode throws ra::Error listing the names.
AttentionMode parse_mode(std::string_view name);
std::string_view name(AttentionMode mode);
// "shm", "ucx".
TransportKind parse_transport(std::string_view name);
std::string_view name(TransportKind transport);
// "exact", "int8".
std::string_view name(GraphNavigation navigation);
// Modes with a CPU part: flat, ivf, hnsw, retrieval.
bool needs_retrievers(AttentionMode mode);

// One row per key, in file order: the dotted key ("index.top_k"), its type ("integer", "string", ...),
// its default as YAML text, and its doc. Used for the README table and tests.
struct ConfigField {
  std::string key;
  std::string type;
  std::string default_value;
  std::string doc;
};
std::vector<ConfigField> run_config_fields();

// Reads a config file: .yaml/.yml (yaml-cpp) or .json (nlohmann_json), chosen by extension. Keys are
// optional; missing keys keep their defaults. Throws ra::Error naming the file and the key for an
// unknown key, a wrong type (with the expected type) or a bad enum name. Does not call validate().
RunConfig load_run_config(const std::string& path);

// The same from parsed JSON; `source` names it in errors (a file, "the plan file", ...).
RunConfig run_config_from_json(const nlohmann::json& j, const std::string& source);
// Every field, enums by name; geometry is null when absent. run_config_from_json(to_json(c)) == c.
nlohmann::json to_json(const RunConfig& config);

// Throws ra::Error naming the first offending field and its value, e.g. "window must be >= 1 (got 0)".
void validate(const RunConfig& config);

// Every field with its effective value and its doc as a comment; loads back with load_run_config.
std::string to_yaml(const RunConfig& config);

// What add_run_config_options registers. `values` holds what the flags parsed into; `given` records
// which were on the command line so resolve_run_config applies only those.
struct RunConfigFlags {
  std::string config_path;      // --config
  bool print_config = false;    // --print-config: print the effective config and exit
  bool dry_run = false;         // --dry-run: print the plan and the mpirun line, start nothing
  RunConfig values;
  std::string mode;             // --mode, parsed by resolve_run_config
  std::string transport;        // --transport
  std::string backend;          // --backend
  struct Given {
    const CLI::Option* option;
    void (*apply)(RunConfig& out, const RunConfigFlags& flags);
  };
  std::vector<Given> given;
};

// Registers --config, --print-config, --dry-run and one flag per common field (--mode --transport
// --retrievers --hostfile --sinks --window --top-k --ef --nprobe --retriever-threads --[no-]pin-retriever-threads
// --liveness-timeout-ms --model --tokenizer --prompt --prompt-file --max-new-tokens --temperature --top-p
// --top-p --seed --backend --threads --synthetic-prompt-bytes) on `cmd`. `flags` must outlive the parse.
void add_run_config_options(CLI::App& cmd, RunConfigFlags& flags);

// defaults < the --config file < the flags given on the command line; then validate(). A prompt given
// on the command line (--prompt or --prompt-file) replaces both prompt keys of the file.
RunConfig resolve_run_config(const RunConfigFlags& flags);

}  // namespace ra
