#include "launcher/run_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>
#include <utility>

#include "common/error.h"
#include "gpu_worker/model/synthetic_model.h"

namespace ra {
namespace {

using json = nlohmann::json;

constexpr std::array<std::pair<std::string_view, AttentionMode>, 6> kModes{{
    {"full", AttentionMode::kFull},
    {"window", AttentionMode::kWindow},
    {"flat", AttentionMode::kFlat},
    {"ivf", AttentionMode::kIvf},
    {"hnsw", AttentionMode::kHnsw},
    {"retrieval", AttentionMode::kRetrieval},
}};
constexpr std::array<std::pair<std::string_view, TransportKind>, 2> kTransports{{
    {"shm", TransportKind::kShm},
    {"ucx", TransportKind::kUcx},
}};

constexpr std::array<std::pair<std::string_view, BackendKind>, 3> kBackends{{
    {"auto", BackendKind::kAuto},
    {"cpu", BackendKind::kCpu},
    {"cuda", BackendKind::kCuda},
}};

// The name table of an enum-valued field.
template <typename T>
constexpr const auto& enum_names() {
  if constexpr (std::is_same_v<T, AttentionMode>) return kModes;
  else if constexpr (std::is_same_v<T, TransportKind>) return kTransports;
  else return kBackends;
}
template <typename T>
constexpr bool kIsEnumField =
    std::is_same_v<T, AttentionMode> || std::is_same_v<T, TransportKind> || std::is_same_v<T, BackendKind>;

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
  v("index.graph_M", "Attention-aware graph: out-degree after pruning",
    [](auto& c) -> auto& { return c.index.graph_M; });
  v("index.graph_Kq", "Attention-aware graph: exact top-Kq keys per training query",
    [](auto& c) -> auto& { return c.index.graph_Kq; });
  v("index.graph_ef_construction", "Attention-aware graph: beam width of the connectivity pass",
    [](auto& c) -> auto& { return c.index.graph_ef_construction; });
  v("index.graph_max_train_queries", "Attention-aware graph: training queries per head; 0 = all prefill queries",
    [](auto& c) -> auto& { return c.index.graph_max_train_queries; });
  v("index.graph_warm_history",
    "Attention-aware graph: seed each search with the head's answers at the last N decode steps; 0 = off",
    [](auto& c) -> auto& { return c.index.graph_warm_history; });
  v("index.graph_key_lists_stride",
    "Attention-aware graph: every N-th key also trains the graph as a query (its own top-Kq list); 0 = off",
    [](auto& c) -> auto& { return c.index.graph_key_lists_stride; });
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

bool is_section(std::string_view key) { return key == "index" || key == "geometry"; }
bool in_geometry(std::string_view key) { return key.starts_with("geometry."); }

template <typename T>
std::string expected_type() {
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
  else if constexpr (std::is_same_v<T, float>) return "a number";
  else if constexpr (kIsEnumField<T>) return "one of " + joined_names(enum_names<T>());
  else if constexpr (std::is_unsigned_v<T>) return "a non-negative integer";
  else if constexpr (sizeof(T) == 4) return "a 32-bit integer";
  else return "an integer";
}

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

[[noreturn]] void type_error(const std::string& where, const std::string& key, const std::string& expected,
                             const json& v) {
  raise("{}: key '{}' must be {} (got {})", where, key, expected, shown(v));
}

template <typename T>
void read_value(T& out, const json& v, const std::string& key, const std::string& where) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_null()) out.clear();
    else if (v.is_string()) out = v.get<std::string>();
    else type_error(where, key, expected_type<T>(), v);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (v.is_null()) { out.clear(); return; }
    if (!v.is_array()) type_error(where, key, expected_type<T>(), v);
    std::vector<std::string> items;
    for (const json& item : v) {
      if (!item.is_string()) type_error(where, key, expected_type<T>(), v);
      items.push_back(item.get<std::string>());
    }
    out = std::move(items);
  } else if constexpr (std::is_same_v<T, float>) {
    if (!v.is_number()) type_error(where, key, expected_type<T>(), v);
    out = v.get<float>();
  } else if constexpr (kIsEnumField<T>) {
    if (!v.is_string()) type_error(where, key, expected_type<T>(), v);
    const std::string s = v.get<std::string>();
    bool found = false;
    for (const auto& [n, m] : enum_names<T>()) if (n == s) { out = m; found = true; }
    if (!found) type_error(where, key, expected_type<T>(), v);
  } else {
    static_assert(std::is_integral_v<T>);
    if (!v.is_number_integer()) type_error(where, key, expected_type<T>(), v);
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) type_error(where, key, expected_type<T>(), v);
      out = static_cast<T>(u);
    } else {
      const auto i = v.get<int64_t>();
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
        type_error(where, key, expected_type<T>(), v);
      }
      out = static_cast<T>(i);
    }
  }
}

template <typename T>
json write_value(const T& v) {
  if constexpr (kIsEnumField<T>) return std::string(name(v));
  else return json(v);
}

// Plain text of a value as it appears in YAML: strings double-quoted (JSON escapes are YAML escapes),
// numbers in shortest round-trip form, enums bare, lists in flow style.
template <typename T>
std::string yaml_text(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) return json(v).dump(-1, ' ', false, json::error_handler_t::replace);
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out += ", ";
      out += yaml_text(v[i]);
    }
    return out + "]";
  } else if constexpr (kIsEnumField<T>) {
    return std::string(name(v));
  } else {
    return fmt::format("{}", v);
  }
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

[[noreturn]] void unknown_key(const std::string& where, const std::string& key) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  visit_fields([&](std::string_view k, std::string_view, auto) {
    const std::string_view tail = k.substr(k.find('.') == std::string_view::npos ? 0 : k.find('.') + 1);
    // A key given without its section ("top_k" for "index.top_k") is the best guess there is.
    const size_t d = tail != k && tail == key ? 0
                                              : std::min(edit_distance(key, k), edit_distance(key, tail) + (tail == k ? 0 : 1));
    if (d < best_d) { best_d = d; best = std::string(k); }
  });
  const bool close = best_d <= std::max<size_t>(2, key.size() / 4);
  raise("{}: unknown key '{}'{}", where, key, close ? fmt::format(" (did you mean '{}'?)", best) : "");
}

// Applies one dotted key (e.g. "index.top_k"). Unknown keys and type errors name `where` and the key.
void apply_key(RunConfig& c, const std::string& key, const json& v, const std::string& where) {
  bool found = false;
  if (in_geometry(key) && !c.geometry) c.geometry.emplace();
  visit_fields([&](std::string_view k, std::string_view, auto acc) {
    if (!found && k == key) {
      read_value(acc(c), v, key, where);
      found = true;
    }
  });
  if (!found) unknown_key(where, key);
}

// One spelling per key: "index.top_k" is written as a nested map, never as a dotted key.
void require_undotted(const std::string& key, const std::string& where) {
  const size_t dot = key.find('.');
  RA_REQUIRE(dot == std::string::npos, "{}: unknown key '{}': write nested keys as a map ('{}:' then '  {}:')",
             where, key, key.substr(0, dot), key.substr(dot + 1));
}

// Opens a section map ("index", "geometry"): null clears geometry; anything else but a map is an error.
bool open_section(RunConfig& c, const std::string& section, bool is_null, bool is_map, const std::string& where,
                  const std::string& got) {
  if (is_null) {
    if (section == "geometry") c.geometry.reset();
    return false;
  }
  RA_REQUIRE(is_map, "{}: key '{}' must be a map of keys (got {})", where, section, got);
  if (section == "geometry" && !c.geometry) c.geometry.emplace();
  return true;
}

// --- YAML: scalars are untyped text, so each is converted to JSON by the type its key expects. ---

json yaml_generic(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (auto it = n.begin(); it != n.end(); ++it) o[it->first.Scalar()] = yaml_generic(it->second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& item : n) a.push_back(yaml_generic(item));
      return a;
    }
    case YAML::NodeType::Scalar:
      return n.Scalar();
    default:
      return nullptr;
  }
}

template <typename T>
json yaml_typed(const YAML::Node& n) {
  if (!n.IsScalar()) {
    if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (n.IsSequence()) {
        json a = json::array();
        for (const auto& item : n) a.push_back(item.IsScalar() ? json(item.Scalar()) : yaml_generic(item));
        return a;
      }
    }
    return yaml_generic(n);
  }
  const std::string& s = n.Scalar();
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if constexpr (std::is_same_v<T, float>) {
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc() && r.ptr == last) return d;
  } else if constexpr (std::is_integral_v<T>) {
    int64_t i = 0;
    auto r = std::from_chars(first, last, i);
    if (r.ec == std::errc() && r.ptr == last) return i;
    uint64_t u = 0;
    r = std::from_chars(first, last, u);
    if (r.ec == std::errc() && r.ptr == last) return u;
  }
  return s;  // strings, enums, and numbers that did not parse (read_value reports the type)
}

// `key_node` is the key's own node: its line names the place, also for a null value.
void apply_yaml_key(RunConfig& c, const std::string& key, const YAML::Node& key_node, const YAML::Node& v,
                    const std::string& path) {
  const std::string where = fmt::format("{}:{}", path, key_node.Mark().line + 1);
  json converted;
  bool found = false;
  visit_fields([&](std::string_view k, std::string_view, auto acc) {
    if (!found && k == key) {
      converted = yaml_typed<FieldType<decltype(acc)>>(v);
      found = true;
    }
  });
  if (!found) unknown_key(where, key);
  apply_key(c, key, converted, where);
}

RunConfig run_config_from_yaml(const YAML::Node& root, const std::string& path) {
  RunConfig c;
  if (root.IsNull()) return c;  // an empty file: all defaults
  RA_REQUIRE(root.IsMap(), "{}: a run config must be a map of keys (got {})", path, shown(yaml_generic(root)));
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    const YAML::Node value = it->second;
    const std::string where = fmt::format("{}:{}", path, it->first.Mark().line + 1);
    if (!is_section(key)) {
      require_undotted(key, where);
      apply_yaml_key(c, key, it->first, value, path);
      continue;
    }
    if (!open_section(c, key, value.IsNull(), value.IsMap(), where, shown(yaml_generic(value)))) continue;
    for (auto in = value.begin(); in != value.end(); ++in) {
      require_undotted(in->first.Scalar(), fmt::format("{}:{}", path, in->first.Mark().line + 1));
      apply_yaml_key(c, key + "." + in->first.Scalar(), in->first, in->second, path);
    }
  }
  return c;
}

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return ext;
}

// RFC 3629 (the rules nlohmann_json enforces when it writes a string): no overlongs, no surrogates.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (b < 0x80) extra = 0;
    else if (b >= 0xC2 && b <= 0xDF) extra = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
      extra = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      extra = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return false;
    }
    i += extra + 1;
  }
  return true;
}

void require_at_least(std::string_view field, int64_t value, int64_t min) {
  RA_REQUIRE(value >= min, "{} must be >= {} (got {})", field, min, value);
}

}  // namespace

AttentionMode parse_mode(std::string_view s) {
  for (const auto& [n, m] : kModes) if (n == s) return m;
  raise("unknown attention mode '{}' (expected one of {})", s, joined_names(kModes));
}

std::string_view name(AttentionMode mode) {
  for (const auto& [n, m] : kModes) if (m == mode) return n;
  RA_ASSERT_MSG(false, "AttentionMode {}", static_cast<int>(mode));
}

TransportKind parse_transport(std::string_view s) {
  for (const auto& [n, t] : kTransports) if (n == s) return t;
  raise("unknown transport '{}' (expected one of {})", s, joined_names(kTransports));
}

std::string_view name(TransportKind transport) {
  for (const auto& [n, t] : kTransports) if (t == transport) return n;
  RA_ASSERT_MSG(false, "TransportKind {}", static_cast<int>(transport));
}

bool needs_retrievers(AttentionMode mode) {
  return mode == AttentionMode::kFlat || mode == AttentionMode::kIvf || mode == AttentionMode::kHnsw ||
         mode == AttentionMode::kRetrieval;
}

std::vector<ConfigField> run_config_fields() {
  RunConfig defaults;
  defaults.geometry.emplace();
  std::vector<ConfigField> out;
  visit_fields([&](std::string_view key, std::string_view doc, auto acc) {
    using T = FieldType<decltype(acc)>;
    std::string type = expected_type<T>();
    if (type.starts_with("a ")) type = type.substr(2);
    else if (type.starts_with("an ")) type = type.substr(3);
    out.push_back({std::string(key), type, yaml_text(acc(std::as_const(defaults))), std::string(doc)});
  });
  return out;
}

RunConfig run_config_from_json(const json& j, const std::string& source) {
  RA_REQUIRE(j.is_object(), "{}: a run config must be a map of keys (got {})", source, shown(j));
  RunConfig c;
  for (const auto& [key, value] : j.items()) {
    if (!is_section(key)) {
      require_undotted(key, source);
      apply_key(c, key, value, source);
      continue;
    }
    if (!open_section(c, key, value.is_null(), value.is_object(), source, shown(value))) continue;
    for (const auto& [inner, v] : value.items()) {
      require_undotted(inner, source);
      apply_key(c, key + "." + inner, v, source);
    }
  }
  return c;
}

json to_json(const RunConfig& config) {
  json j = json::object();
  visit_fields([&](std::string_view key, std::string_view, auto acc) {
    if (in_geometry(key) && !config.geometry) return;
    const size_t dot = key.find('.');
    if (dot == std::string_view::npos) {
      j[std::string(key)] = write_value(acc(config));
    } else {
      j[std::string(key.substr(0, dot))][std::string(key.substr(dot + 1))] = write_value(acc(config));
    }
  });
  if (!config.geometry) j["geometry"] = nullptr;
  return j;
}

RunConfig load_run_config(const std::string& path) {
  const std::string ext = lower_extension(path);
  RA_REQUIRE(ext == ".yaml" || ext == ".yml" || ext == ".json",
             "{}: unknown config format '{}' (expected .yaml, .yml or .json)", path, ext);
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open the config file", path);
  std::stringstream text;
  text << in.rdbuf();
  if (ext == ".json") {
    json j;
    try {
      j = json::parse(text.str());
    } catch (const json::parse_error& e) {
      raise("{}: JSON syntax error: {}", path, e.what());
    }
    return run_config_from_json(j, path);
  }
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    raise("{}:{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  return run_config_from_yaml(root, path);
}

void validate(const RunConfig& c) {
  visit_fields([&](std::string_view key, std::string_view, auto acc) {
    if (in_geometry(key) && !c.geometry) return;
    using T = FieldType<decltype(acc)>;
    if constexpr (std::is_same_v<T, std::string>) {
      RA_REQUIRE(valid_utf8(acc(c)), "{} is not valid UTF-8 (put raw bytes in a prompt_file)", key);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      for (const std::string& s : acc(c)) RA_REQUIRE(valid_utf8(s), "{} holds an argument that is not valid UTF-8", key);
    }
  });
  RA_REQUIRE(c.prompt.empty() || c.prompt_file.empty(),
             "prompt and prompt_file are exclusive (got prompt of {} bytes and prompt_file '{}')", c.prompt.size(),
             c.prompt_file);
  require_at_least("synthetic_prompt_bytes", c.synthetic_prompt_bytes, 1);
  require_at_least("max_new_tokens", c.max_new_tokens, 0);
  RA_REQUIRE(std::isfinite(c.temperature) && c.temperature >= 0.0f, "temperature must be >= 0 (got {})",
             c.temperature);
  RA_REQUIRE(c.top_p > 0.0f && c.top_p <= 1.0f, "top_p must be in (0, 1] (got {})", c.top_p);
  require_at_least("sinks", c.sinks, 0);
  require_at_least("window", c.window, 1);

  const IndexConfig& ix = c.index;
  require_at_least("index.top_k", ix.top_k, 1);
  require_at_least("index.ef", ix.ef, 0);
  // The graph answers the best top_k keys of all it scored, so its beam may be narrower; HNSW's beam
  // holds its answer.
  RA_REQUIRE(ix.ef == 0 || ix.ef >= ix.top_k || c.mode == AttentionMode::kRetrieval,
             "index.ef must be 0 (the index default) or >= index.top_k ({}) in mode {} (got {})", ix.top_k,
             name(c.mode), ix.ef);
  require_at_least("index.nprobe", ix.nprobe, 0);
  require_at_least("index.graph_M", ix.graph_M, 1);
  require_at_least("index.graph_Kq", ix.graph_Kq, 1);
  require_at_least("index.graph_ef_construction", ix.graph_ef_construction, 1);
  require_at_least("index.graph_max_train_queries", ix.graph_max_train_queries, 0);
  require_at_least("index.graph_warm_history", ix.graph_warm_history, 0);
  require_at_least("index.graph_key_lists_stride", ix.graph_key_lists_stride, 0);
  require_at_least("index.ivf_nlist", ix.ivf_nlist, 0);
  require_at_least("index.hnsw_M", ix.hnsw_M, 2);
  require_at_least("index.hnsw_ef_construction", ix.hnsw_ef_construction, 1);

  require_at_least("retrievers", c.retrievers, 0);
  RA_REQUIRE(!needs_retrievers(c.mode) || c.retrievers >= 1, "retrievers must be >= 1 in mode {} (got {})",
             name(c.mode), c.retrievers);
  require_at_least("worker_threads", c.worker_threads, 0);
  require_at_least("retriever_threads", c.retriever_threads, 0);
  require_at_least("liveness_timeout_ms", c.liveness_timeout_ms, 1);
  require_at_least("build_timeout_ms", c.build_timeout_ms, 1);
  RA_REQUIRE(!c.mpirun.empty(), "mpirun must name the mpirun executable (got an empty string)");

  if (c.geometry) {
    const SyntheticModelSpec& g = *c.geometry;
    RA_REQUIRE(c.model.empty(), "geometry is for the embedded synthetic model only; remove it or set model to "
               "an empty string (got model '{}')", c.model);
    require_at_least("geometry.hidden_size", g.hidden_size, 1);
    require_at_least("geometry.n_layers", g.n_layers, 1);
    require_at_least("geometry.n_heads", g.n_heads, 1);
    require_at_least("geometry.n_kv_heads", g.n_kv_heads, 1);
    require_at_least("geometry.head_dim", g.head_dim, 2);
    require_at_least("geometry.intermediate_size", g.intermediate_size, 1);
    require_at_least("geometry.max_position_embeddings", g.max_position_embeddings, 1);
    RA_REQUIRE(g.n_heads % g.n_kv_heads == 0,
               "geometry.n_heads ({}) must be a multiple of geometry.n_kv_heads ({}) (GQA groups)", g.n_heads,
               g.n_kv_heads);
    RA_REQUIRE(g.head_dim % 2 == 0, "geometry.head_dim must be even for RoPE (got {})", g.head_dim);
  }
}

std::string to_yaml(const RunConfig& config) {
  std::string out =
      "# ra run configuration: the effective value of every key (defaults < --config < flags).\n"
      "# Load it back with --config FILE.yaml; configs/README.md documents each key.\n";
  std::string section;
  visit_fields([&](std::string_view key, std::string_view doc, auto acc) {
    const size_t dot = key.find('.');
    const std::string sec = dot == std::string_view::npos ? "" : std::string(key.substr(0, dot));
    if (sec == "geometry" && !config.geometry) {
      if (section != "geometry") out += "geometry: null  # none: the model's own geometry\n";
      section = sec;
      return;
    }
    if (sec != section && !sec.empty()) out += sec + ":\n";
    section = sec;
    const std::string_view leaf = dot == std::string_view::npos ? key : key.substr(dot + 1);
    out += fmt::format("{}{}: {}  # {}\n", sec.empty() ? "" : "  ", leaf, yaml_text(acc(config)), doc);
  });
  return out;
}

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
  given(cmd.add_option("--retriever-threads", v.retriever_threads,
                       "Threads per retriever (default: the cores of its NUMA node, shared)"),
        [](RunConfig& c, const RunConfigFlags& f) { c.retriever_threads = f.values.retriever_threads; });
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
