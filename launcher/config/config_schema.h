#pragma once
// The schema of the run configuration (STYLE §12), internal to launcher/config/: the name tables of the
// enum-valued fields and the one list of keys, each with its doc and the accessor of its field. Every
// reader, writer and check of a RunConfig walks this list, so a new key is one row here (plus its member
// and default in run_config.h).

#include <array>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "launcher/config/run_config.h"

namespace ra::config {

inline constexpr std::array<std::pair<std::string_view, AttentionMode>, 6> kModes{{
    {"full", AttentionMode::kFull},
    {"window", AttentionMode::kWindow},
    {"flat", AttentionMode::kFlat},
    {"ivf", AttentionMode::kIvf},
    {"hnsw", AttentionMode::kHnsw},
    {"retrieval", AttentionMode::kRetrieval},
}};
inline constexpr std::array<std::pair<std::string_view, TransportKind>, 2> kTransports{{
    {"shm", TransportKind::kShm},
    {"ucx", TransportKind::kUcx},
}};

inline constexpr std::array<std::pair<std::string_view, GraphNavigation>, 2> kNavigations{{
    {"exact", GraphNavigation::kExact},
    {"int8", GraphNavigation::kInt8},
}};

inline constexpr std::array<std::pair<std::string_view, BackendKind>, 3> kBackends{{
    {"auto", BackendKind::kAuto},
    {"cpu", BackendKind::kCpu},
    {"cuda", BackendKind::kCuda},
}};

// The name table of an enum-valued field.
template <typename T>
constexpr const auto& enum_names() {
  if constexpr (std::is_same_v<T, AttentionMode>) return kModes;
  else if constexpr (std::is_same_v<T, TransportKind>) return kTransports;
  else if constexpr (std::is_same_v<T, GraphNavigation>) return kNavigations;
  else return kBackends;
}
template <typename T>
inline constexpr bool kIsEnumField =
    std::is_same_v<T, AttentionMode> || std::is_same_v<T, TransportKind> || std::is_same_v<T, BackendKind> ||
    std::is_same_v<T, GraphNavigation>;

template <typename Table>
std::string joined_names(const Table& table) {
  std::string out;
  for (const auto& [n, v] : table) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

// The one list of keys (STYLE §12): calls v(key, doc, accessor) for every field, in file order. The
// accessor maps a (const) RunConfig to the field; geometry.* accessors need config.geometry set.
template <typename V>
void visit_fields(V&& v) {
  v("model", "Hugging Face checkpoint directory or llama2.c .bin; empty = the embedded demo model",
    [](auto& c) -> auto& { return c.model; });
  v("tokenizer", "'bytes', a llama2.c tokenizer .bin, a tokenizer.json, or empty = found beside the model",
    [](auto& c) -> auto& { return c.tokenizer; });
  v("prompt", "Prompt text; with prompt_file empty too: the synthetic prompt (demo model) or BOS only",
    [](auto& c) -> auto& { return c.prompt; });
  v("prompt_file", "Read the prompt from this file (raw bytes); excludes prompt",
    [](auto& c) -> auto& { return c.prompt_file; });
  v("synthetic_prompt_bytes", "Length of the synthetic prompt of the demo model when no prompt is given",
    [](auto& c) -> auto& { return c.synthetic_prompt_bytes; });
  v("max_new_tokens", "Tokens to generate", [](auto& c) -> auto& { return c.max_new_tokens; });
  v("ignore_eos", "Keep generating past EOS/BOS up to max_new_tokens (benchmarks, soak runs)",
    [](auto& c) -> auto& { return c.ignore_eos; });
  v("progress_every", "Print a progress line (decode step times, retrieval per token) every this many decode "
    "steps; 0 = only the report at the end",
    [](auto& c) -> auto& { return c.progress_every; });
  v("report_json", "Write the run's figures (prefill, build tail, decode p50/p99, the retrieval breakdown, peak "
    "memory) to this JSON file at the end; empty = none",
    [](auto& c) -> auto& { return c.report_json; });
  v("temperature", "Sampling temperature; 0 is greedy", [](auto& c) -> auto& { return c.temperature; });
  v("top_p", "Nucleus sampling: draw among the most probable tokens whose mass reaches top_p; 1 = off",
    [](auto& c) -> auto& { return c.top_p; });
  v("seed", "Sampling seed", [](auto& c) -> auto& { return c.seed; });
  v("mode", "Attention mode: full, window, flat, ivf, hnsw or retrieval (DESIGN §5)",
    [](auto& c) -> auto& { return c.mode; });
  v("sinks", "First tokens kept on the GPU (static set)", [](auto& c) -> auto& { return c.sinks; });
  v("window", "Last tokens kept on the GPU (static set)", [](auto& c) -> auto& { return c.window; });
  v("index.top_k", "Keys retrieved per query head and step", [](auto& c) -> auto& { return c.index.top_k; });
  v("index.ef", "Search beam of the graph and HNSW indexes; 0 = the index default; HNSW: >= top_k",
    [](auto& c) -> auto& { return c.index.ef; });
  v("index.nprobe", "IVF lists probed per query; 0 = the index default",
    [](auto& c) -> auto& { return c.index.nprobe; });
  v("index.scan_fraction",
    "ivf, hnsw, retrieval: > 0 = each shard's ef / nprobe chosen at the build so that a search scores this fraction "
    "of its keys (measured on the head's prefill queries; ef and nprobe unused); 0 = off",
    [](auto& c) -> auto& { return c.index.scan_fraction; });
  v("index.graph_M", "Attention-aware graph: out-degree after pruning",
    [](auto& c) -> auto& { return c.index.graph_M; });
  v("index.graph_Kq", "Attention-aware graph: exact top-Kq keys per training query",
    [](auto& c) -> auto& { return c.index.graph_Kq; });
  v("index.graph_ef_construction", "Attention-aware graph: beam width of the connectivity pass",
    [](auto& c) -> auto& { return c.index.graph_ef_construction; });
  v("index.graph_connect_max_in_degree",
    "Attention-aware graph: only keys with at most N in-edges after the projection search for connectivity "
    "edges (0: the keys no training list reached, the default); -1 = every key (RoarGraph's pass)",
    [](auto& c) -> auto& { return c.index.graph_connect_max_in_degree; });
  v("index.graph_connect_query_lists",
    "Attention-aware graph: a connecting key takes the top lists of the N training queries that score it best "
    "instead of searching the projected graph (better where training queries are sparse); 0 = search",
    [](auto& c) -> auto& { return c.index.graph_connect_query_lists; });
  v("index.graph_max_train_queries", "Attention-aware graph: training queries per head; 0 = all prefill queries",
    [](auto& c) -> auto& { return c.index.graph_max_train_queries; });
  v("index.graph_warm_history",
    "Attention-aware graph: seed each search with the head's answers at the last N decode steps; 0 = off",
    [](auto& c) -> auto& { return c.index.graph_warm_history; });
  v("index.graph_key_lists_stride",
    "Attention-aware graph: every N-th key also trains the graph as a query (its own top-Kq list); 0 = off",
    [](auto& c) -> auto& { return c.index.graph_key_lists_stride; });
  v("index.graph_heads_per_search",
    "Attention-aware graph: 0 = one graph per query head; N >= 1 = one graph per kv head, searched by N of its "
    "query heads per traversal (N divides the GQA group)",
    [](auto& c) -> auto& { return c.index.graph_heads_per_search; });
  v("index.graph_interleave",
    "Attention-aware graph with graph_heads_per_search 1: separate searches a retriever thread steps in turn "
    "(their memory loads overlap); 0 = the query heads of a layer spread evenly over the threads, 1 = off",
    [](auto& c) -> auto& { return c.index.graph_interleave; });
  v("index.build_layers",
    "Layers a retriever builds at once during the prefill, each on retriever_threads / N of its threads "
    "(at most retriever_threads); 1 = one layer at a time on all of them",
    [](auto& c) -> auto& { return c.index.build_layers; });
  v("index.graph_expand",
    "Attention-aware graph: nodes a decode search expands per step, 1 (strictly best-first) to 4 (the best few "
    "candidates at once, their loads in flight together)",
    [](auto& c) -> auto& { return c.index.graph_expand; });
  v("index.graph_merge_queries",
    "Attention-aware graph, one per kv head: the query heads whose queries each evicted token brings to its tail "
    "merge, 0 = the whole GQA group, 1 = one (rotating over the group by position; the merges' cost)",
    [](auto& c) -> auto& { return c.index.graph_merge_queries; });
  v("index.graph_navigation",
    "Attention-aware graph: what a decode search walks, exact (the keys) or int8 (an 8-bit copy per kv head, "
    "half the memory traffic; the keys it picks are attended exactly)",
    [](auto& c) -> auto& { return c.index.graph_navigation; });
  v("index.ivf_nlist", "IVF lists; 0 = about 4*sqrt(keys)", [](auto& c) -> auto& { return c.index.ivf_nlist; });
  v("index.hnsw_M", "HNSW out-degree", [](auto& c) -> auto& { return c.index.hnsw_M; });
  v("index.hnsw_ef_construction", "HNSW build pool", [](auto& c) -> auto& { return c.index.hnsw_ef_construction; });
  v("transport", "Worker <-> retriever transport: shm (same host) or ucx (any host)",
    [](auto& c) -> auto& { return c.transport; });
  v("retrievers", "CPU retriever ranks; must be >= 1 in modes flat, ivf, hnsw, retrieval; unused otherwise",
    [](auto& c) -> auto& { return c.retrievers; });
  v("hostfile", "Open MPI hostfile ('host slots=N' lines); empty = this machine only",
    [](auto& c) -> auto& { return c.hostfile; });
  v("backend", "Compute backend of the worker: cuda, cpu, or auto (cuda when a GPU is visible)",
    [](auto& c) -> auto& { return c.backend; });
  v("worker_threads", "GPU worker compute threads; 0 = all cores", [](auto& c) -> auto& { return c.worker_threads; });
  v("retriever_threads", "Threads per retriever; 0 = cores of its NUMA node / retrievers on that node",
    [](auto& c) -> auto& { return c.retriever_threads; });
  v("kv_dtype", "The retrievers' KV storage: auto (the checkpoint's dtype), bf16, f16, f32, int8 (codes and a scale "
    "per token and kv head: head_dim + 4 bytes a row), or key/value apart, e.g. int8/bf16",
    [](auto& c) -> auto& { return c.kv_dtype; });
  v("pin_retriever_threads", "Pin each retriever's search threads to cores of its own (its node's cores split "
    "between the retrievers on it); false = they float over the node",
    [](auto& c) -> auto& { return c.pin_retriever_threads; });
  v("bind_worker", "Bind the GPU worker's CPUs and memory to the NUMA node its GPU hangs off (CUDA backend; "
    "nothing to do on one-node machines); false = it floats over the machine",
    [](auto& c) -> auto& { return c.bind_worker; });
  v("liveness_timeout_ms", "A peer silent for this long is declared dead",
    [](auto& c) -> auto& { return c.liveness_timeout_ms; });
  v("build_timeout_ms", "The longest wait for an index build", [](auto& c) -> auto& { return c.build_timeout_ms; });
  v("mpirun", "The mpirun executable", [](auto& c) -> auto& { return c.mpirun; });
  v("mpirun_extra_args", "Extra global mpirun options, placed before the app contexts",
    [](auto& c) -> auto& { return c.mpirun_extra_args; });
  v("geometry.hidden_size", "Synthetic model (model empty): hidden size",
    [](auto& c) -> auto& { return c.geometry->hidden_size; });
  v("geometry.n_layers", "Synthetic model: layers", [](auto& c) -> auto& { return c.geometry->n_layers; });
  v("geometry.n_heads", "Synthetic model: query heads", [](auto& c) -> auto& { return c.geometry->n_heads; });
  v("geometry.n_kv_heads", "Synthetic model: key/value heads (divides n_heads)",
    [](auto& c) -> auto& { return c.geometry->n_kv_heads; });
  v("geometry.head_dim", "Synthetic model: head dimension (even)", [](auto& c) -> auto& { return c.geometry->head_dim; });
  v("geometry.intermediate_size", "Synthetic model: MLP width",
    [](auto& c) -> auto& { return c.geometry->intermediate_size; });
  v("geometry.max_position_embeddings", "Synthetic model: longest sequence (prompt + generated)",
    [](auto& c) -> auto& { return c.geometry->max_position_embeddings; });
  v("geometry.seed", "Synthetic model: weight seed", [](auto& c) -> auto& { return c.geometry->seed; });
}

template <typename Acc>
using FieldType = std::remove_cvref_t<decltype(std::declval<Acc>()(std::declval<RunConfig&>()))>;

inline bool is_section(std::string_view key) { return key == "index" || key == "geometry"; }
inline bool in_geometry(std::string_view key) { return key.starts_with("geometry."); }

}  // namespace ra::config
