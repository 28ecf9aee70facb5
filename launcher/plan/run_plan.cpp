#include "launcher/plan/run_plan.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <type_traits>

#include "common/error.h"
#include "gpu_worker/model/model_config.h"
#include "launcher/plan/id_ranges.h"

namespace ra {
namespace {

using json = nlohmann::json;

constexpr int kPlanVersion = 2;  // 2: retrievers[].cpus
constexpr const char* kPlanFormat = "ra-plan";

void check_geometry(const Geometry& g, const std::string& where) {
  RA_REQUIRE(g.n_layers >= 1 && g.n_heads >= 1 && g.n_kv_heads >= 1 && g.head_dim >= 1,
             "{}: geometry needs n_layers, n_heads, n_kv_heads and head_dim >= 1 (got {}, {}, {}, {})", where,
             g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim);
  RA_REQUIRE(g.n_heads % g.n_kv_heads == 0, "{}: geometry n_heads ({}) must be a multiple of n_kv_heads ({})",
             where, g.n_heads, g.n_kv_heads);
  RA_REQUIRE(std::isfinite(g.scale) && g.scale > 0.0f, "{}: geometry scale must be positive (got {})", where,
             g.scale);
  RA_REQUIRE(g.kv_dtype == "BF16" || g.kv_dtype == "F16" || g.kv_dtype == "F32",
             "{}: geometry kv_dtype must be BF16, F16 or F32 (got '{}')", where, g.kv_dtype);
}

std::string new_job_id() {
  std::random_device rd;
  const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::seed_seq seq{rd(), rd(), static_cast<unsigned>(t), static_cast<unsigned>(t >> 32),
                    static_cast<unsigned>(getpid())};
  std::mt19937_64 gen(seq);
  return fmt::format("{:012x}", gen() & 0xffffffffffffull);
}

// NUMA node, threads and cpus of every retriever of one host, from that host's topology: retriever j of
// the host's n takes node j % nodes; the node's cores are split into consecutive runs, one per retriever
// on it (with more retrievers than cores, core index % cores each).
void place_on_host(std::vector<RetrieverPlacement*>& on_host, const NumaTopology& topo, int fixed_threads) {
  const auto n_nodes = static_cast<int>(topo.nodes.size());
  std::vector<int> sharing(topo.nodes.size(), 0), placed(topo.nodes.size(), 0);
  for (size_t j = 0; j < on_host.size(); ++j) ++sharing[j % topo.nodes.size()];
  for (size_t j = 0; j < on_host.size(); ++j) {
    RetrieverPlacement& r = *on_host[j];
    r.numa_node = static_cast<int>(j) % n_nodes;
    const NumaTopology::Node& node = topo.nodes[static_cast<size_t>(r.numa_node)];
    const std::vector<int>& cores = node.core_cpus.empty() ? node.cpus : node.core_cpus;
    const int share = sharing[static_cast<size_t>(r.numa_node)];
    const int index = placed[static_cast<size_t>(r.numa_node)]++;
    const auto n = static_cast<int>(cores.size());
    r.cpus.clear();
    if (n > 0) {
      int begin = index * n / share, end = (index + 1) * n / share;
      if (end <= begin) begin = index % n, end = begin + 1;
      r.cpus.assign(cores.begin() + begin, cores.begin() + end);
    }
    r.threads = fixed_threads > 0 ? fixed_threads : std::max(1, node.cores / share);
  }
}

std::vector<RetrieverPlacement*> retrievers_on(std::vector<RetrieverPlacement>& rs, const std::string& host) {
  std::vector<RetrieverPlacement*> out;
  for (RetrieverPlacement& r : rs) {
    if (r.host == host) out.push_back(&r);
  }
  return out;
}

// "0-3,8,10-11", or "none".
std::string ranges(const std::vector<int64_t>& v) {
  const std::string out = id_ranges(v);
  return out.empty() ? "none" : out;
}

template <typename T>
T get_key(const json& j, const char* key, const std::string& where) {
  RA_REQUIRE(j.is_object(), "{}: expected a map holding '{}' (got {})", where, key, j.dump());
  const auto it = j.find(key);
  RA_REQUIRE(it != j.end(), "{}: missing key '{}'", where, key);
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    raise("{}: key '{}' has the wrong type (got {})", where, key, it->dump());
  }
}

}  // namespace

Geometry make_geometry(const ModelConfig& c, const std::string& weight_dtype) {
  Geometry g;
  g.n_layers = c.n_layers;
  g.n_heads = c.n_heads;
  g.n_kv_heads = c.n_kv_heads;
  g.head_dim = c.head_dim;
  g.scale = c.attn_scale();
  g.kv_dtype = weight_dtype == "BF16" || weight_dtype == "F16" ? weight_dtype : "F32";
  return g;
}

int RunPlan::owner(int64_t layer, int64_t kv_head) const {
  RA_ASSERT_MSG(!retrievers.empty(), "owner() in a plan without retrievers (mode {})", name(config.mode));
  RA_ASSERT_MSG(layer >= 0 && layer < geometry.n_layers && kv_head >= 0 && kv_head < geometry.n_kv_heads,
                "(layer {}, kv head {}) outside {} layers x {} kv heads", layer, kv_head, geometry.n_layers,
                geometry.n_kv_heads);
  return static_cast<int>((layer * geometry.n_kv_heads + kv_head) % num_retrievers());
}

std::vector<int64_t> RunPlan::owned_kv_heads(int retriever, int64_t layer) const {
  RA_ASSERT_MSG(retriever >= 0 && retriever < num_retrievers(), "retriever {} of {}", retriever, num_retrievers());
  std::vector<int64_t> out;
  for (int64_t h = 0; h < geometry.n_kv_heads; ++h) {
    if (owner(layer, h) == retriever) out.push_back(h);
  }
  return out;
}

std::vector<int64_t> RunPlan::owned_query_heads(int retriever, int64_t layer) const {
  const int64_t group = geometry.n_heads / geometry.n_kv_heads;
  std::vector<int64_t> out;
  for (int64_t kv : owned_kv_heads(retriever, layer)) {
    for (int64_t q = kv * group; q < (kv + 1) * group; ++q) out.push_back(q);
  }
  return out;
}

RunPlan make_run_plan(const RunConfig& config, const Geometry& geometry, const NumaTopology& local,
                      const std::vector<HostSlots>& hosts) {
  validate(config);
  check_geometry(geometry, "the model");
  const int64_t group = geometry.n_heads / geometry.n_kv_heads;
  RA_REQUIRE(config.index.graph_heads_per_search == 0 || group % config.index.graph_heads_per_search == 0,
             "index.graph_heads_per_search = {} must divide the model's GQA group of {} query heads per kv head",
             config.index.graph_heads_per_search, group);
  RA_ASSERT(!local.nodes.empty());
  RunPlan plan;
  plan.config = config;
  plan.geometry = geometry;
  plan.job_id = new_job_id();
  const int r_count = needs_retrievers(config.mode) ? config.retrievers : 0;
  plan.world_size = 1 + r_count;

  if (hosts.empty()) {
    plan.worker_host = "localhost";
    for (int i = 0; i < r_count; ++i) plan.retrievers.push_back({1 + i, "localhost", -1, 1});
  } else {
    int total = 0;
    for (const HostSlots& h : hosts) {
      RA_REQUIRE(h.slots >= 1, "hostfile {}: host {} has {} slots (need >= 1)", config.hostfile, h.host, h.slots);
      total += h.slots;
    }
    RA_REQUIRE(total >= plan.world_size,
               "hostfile {} has {} slot{} but the run needs {} ranks (1 GPU worker + {} retrievers); add slots "
               "or use fewer --retrievers",
               config.hostfile, total, total == 1 ? "" : "s", plan.world_size, r_count);
    plan.worker_host = hosts[0].host;
    size_t host = 0;
    int used = 1;  // the worker's slot on hosts[0]
    for (int i = 0; i < r_count; ++i) {
      while (used >= hosts[host].slots) {
        ++host;
        used = 0;
      }
      ++used;
      const std::string& h = hosts[host].host;
      RA_REQUIRE(config.transport != TransportKind::kShm || h == plan.worker_host,
                 "transport shm needs every retriever on the GPU worker's host {}, but retriever {} (rank {}) "
                 "would run on host {}; use --transport ucx, or give {} more slots in {}",
                 plan.worker_host, i, 1 + i, h, plan.worker_host, config.hostfile);
      plan.retrievers.push_back({1 + i, h, -1, 1});
    }
  }
  std::set<std::string> hosts_used;
  for (const RetrieverPlacement& r : plan.retrievers) hosts_used.insert(r.host);
  for (const std::string& h : hosts_used) {  // each host as if it were this one (placed_on_this_host redoes it)
    std::vector<RetrieverPlacement*> on_host = retrievers_on(plan.retrievers, h);
    place_on_host(on_host, local, config.retriever_threads);
  }
  return plan;
}

RetrieverPlacement placed_on_this_host(const RunPlan& plan, int rank, const NumaTopology& here) {
  RA_REQUIRE(rank >= 1 && rank <= plan.num_retrievers(), "rank {} is not a retriever rank of this plan", rank);
  RunPlan copy = plan;
  const std::string& host = copy.retrievers[static_cast<size_t>(rank - 1)].host;
  std::vector<RetrieverPlacement*> on_host = retrievers_on(copy.retrievers, host);
  place_on_host(on_host, here, copy.config.retriever_threads);
  return copy.retrievers[static_cast<size_t>(rank - 1)];
}

json plan_to_json(const RunPlan& p) {
  json geometry = json::object();
  for_each_geometry_field([&](const char* name, auto field) { geometry[name] = p.geometry.*field; });
  json rs = json::array();
  for (const RetrieverPlacement& r : p.retrievers) {
    rs.push_back({{"rank", r.rank}, {"host", r.host}, {"numa_node", r.numa_node}, {"threads", r.threads},
                  {"cpus", r.cpus}});
  }
  return {
      {"format", kPlanFormat},
      {"version", kPlanVersion},
      {"job_id", p.job_id},
      {"world_size", p.world_size},
      {"worker_host", p.worker_host},
      {"config", to_json(p.config)},
      {"geometry", geometry},
      {"retrievers", rs},
  };
}

RunPlan plan_from_json(const json& j, const std::string& source) {
  const auto format = get_key<std::string>(j, "format", source);
  RA_REQUIRE(format == kPlanFormat, "{}: not a plan file (format '{}', expected '{}')", source, format, kPlanFormat);
  const int version = get_key<int>(j, "version", source);
  RA_REQUIRE(version == kPlanVersion, "{}: plan version {} but this build reads version {}", source, version,
             kPlanVersion);
  RunPlan p;
  p.job_id = get_key<std::string>(j, "job_id", source);
  RA_REQUIRE(!p.job_id.empty(), "{}: job_id is empty", source);
  p.world_size = get_key<int>(j, "world_size", source);
  p.worker_host = get_key<std::string>(j, "worker_host", source);
  p.config = run_config_from_json(get_key<json>(j, "config", source), source + " (config)");
  validate(p.config);
  const json g = get_key<json>(j, "geometry", source);
  const std::string gw = source + " (geometry)";
  for_each_geometry_field([&](const char* name, auto field) {
    p.geometry.*field = get_key<std::remove_cvref_t<decltype(p.geometry.*field)>>(g, name, gw);
  });
  check_geometry(p.geometry, source);
  const json rs = get_key<json>(j, "retrievers", source);
  RA_REQUIRE(rs.is_array(), "{}: retrievers must be a list", source);
  for (const json& r : rs) {
    const std::string rw = source + " (retrievers)";
    p.retrievers.push_back({get_key<int>(r, "rank", rw), get_key<std::string>(r, "host", rw),
                            get_key<int>(r, "numa_node", rw), get_key<int>(r, "threads", rw),
                            get_key<std::vector<int>>(r, "cpus", rw)});
  }
  const int expected = needs_retrievers(p.config.mode) ? p.config.retrievers : 0;
  RA_REQUIRE(p.num_retrievers() == expected && p.world_size == 1 + expected,
             "{}: {} retrievers and world_size {} disagree with the config (mode {}, retrievers {})", source,
             p.num_retrievers(), p.world_size, name(p.config.mode), p.config.retrievers);
  for (int i = 0; i < p.num_retrievers(); ++i) {
    const RetrieverPlacement& r = p.retrievers[static_cast<size_t>(i)];
    RA_REQUIRE(r.rank == 1 + i && r.numa_node >= -1 && r.threads >= 1,
               "{}: retriever {} has rank {}, numa_node {}, threads {} (expected rank {}, numa_node >= -1, "
               "threads >= 1)",
               source, i, r.rank, r.numa_node, r.threads, 1 + i);
  }
  return p;
}

std::string canonical_plan_text(const RunPlan& plan) {
  return plan_to_json(plan).dump(-1, ' ', false, json::error_handler_t::replace);
}

uint64_t plan_digest(const RunPlan& plan) {
  uint64_t h = 14695981039346656037ull;
  for (const unsigned char c : canonical_plan_text(plan)) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

OmpWaitPolicies omp_wait_policies_for(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu) {
  int cpus = 0;
  for (const NumaTopology::Node& node : local.nodes) cpus += static_cast<int>(node.cpus.size());
  if (cpus <= 0) cpus = std::max(1, local.total_cores);
  std::map<std::string, int> threads_on, search_threads_on;  // host -> threads of the ranks placed there
  threads_on[plan.worker_host] +=
      worker_on_gpu ? 1 : plan.config.worker_threads > 0 ? plan.config.worker_threads : cpus;
  for (const RetrieverPlacement& r : plan.retrievers) {
    threads_on[r.host] += r.threads;
    search_threads_on[r.host] += r.threads;
  }
  const auto fit = [cpus](const std::map<std::string, int>& on) {
    return std::all_of(on.begin(), on.end(), [cpus](const auto& host) { return host.second <= cpus; });
  };
  if (fit(threads_on)) return {"ACTIVE", "ACTIVE"};
  if (worker_on_gpu) return {"PASSIVE", fit(search_threads_on) ? "" : "PASSIVE"};
  return {"PASSIVE", "PASSIVE"};
}

ShmSpinBudgets shm_spin_budgets_for(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu) {
  if (plan.config.transport != TransportKind::kShm || plan.retrievers.empty()) return {};
  int cpus = 0;
  for (const NumaTopology::Node& node : local.nodes) cpus += static_cast<int>(node.cpus.size());
  if (cpus <= 0) cpus = std::max(1, local.total_cores);
  const int worker_busy = worker_on_gpu ? 1 : plan.config.worker_threads > 0 ? plan.config.worker_threads : cpus;
  int search_threads = 0;
  for (const RetrieverPlacement& r : plan.retrievers) search_threads += r.threads;
  ShmSpinBudgets b;
  if (plan.num_retrievers() + worker_busy <= cpus) b.retriever_us = kRetrieverSpinWithRoom;
  if (search_threads + 1 > cpus) b.worker_us = 0;
  return b;
}

std::string describe_plan(const RunPlan& p) {
  const Geometry& g = p.geometry;
  const RunConfig& c = p.config;
  std::string out = fmt::format(
      "plan {} (digest {:016x}): mode {}, transport {}, {} rank{} (1 GPU worker + {} retriever{})\n", p.job_id,
      plan_digest(p), name(c.mode), name(c.transport), p.world_size, p.world_size == 1 ? "" : "s",
      p.num_retrievers(), p.num_retrievers() == 1 ? "" : "s");
  out += fmt::format("model: {}; {} layers, {} query heads, {} kv heads of dim {}, KV {}, scale {:.6g}\n",
                     c.model.empty() ? "embedded synthetic model" : c.model, g.n_layers, g.n_heads, g.n_kv_heads,
                     g.head_dim, g.kv_dtype, g.scale);
  if (c.mode != AttentionMode::kFull) {
    out += fmt::format("GPU static set: {} sinks + {} window tokens", c.sinks, c.window);
    out += p.num_retrievers() > 0 ? fmt::format("; CPU: top_k {}\n", c.index.top_k) : "\n";
  }
  out += fmt::format("rank 0: GPU worker on {}, threads: {}\n", p.worker_host,
                     c.worker_threads > 0 ? fmt::format("{}", c.worker_threads) : std::string("all cores"));
  const int64_t r_count = p.num_retrievers();
  const int64_t units = g.n_layers * g.n_kv_heads;
  // (layer * n_kv + h) % R repeats every R / gcd(n_kv, R) layers.
  const int64_t period = r_count > 0 ? r_count / std::gcd(g.n_kv_heads, r_count) : 1;
  for (int i = 0; i < r_count; ++i) {
    const RetrieverPlacement& r = p.retrievers[static_cast<size_t>(i)];
    int64_t owned = 0;
    for (int64_t l = 0; l < g.n_layers; ++l) owned += static_cast<int64_t>(p.owned_kv_heads(i, l).size());
    out += fmt::format("rank {}: retriever {} on {}, {}, {} thread{}{}; owns {} of {} (layer, kv head) units: ", r.rank,
                       i, r.host, r.numa_node < 0 ? std::string("unbound") : fmt::format("NUMA node {}", r.numa_node),
                       r.threads, r.threads == 1 ? "" : "s",
                       r.cpus.empty() ? std::string() : fmt::format(" pinned to cpus {}", id_ranges(r.cpus)), owned,
                       units);
    const int64_t shown = std::min(period, g.n_layers);
    if (period == 1) {
      out += fmt::format("every layer: kv heads {} (query heads {})", ranges(p.owned_kv_heads(i, 0)),
                         ranges(p.owned_query_heads(i, 0)));
    } else if (shown <= 4) {
      for (int64_t l = 0; l < shown; ++l) {
        const std::string which = period > g.n_layers ? fmt::format("layer {}", l)
                                                       : fmt::format("layers {} mod {}", l, period);
        out += fmt::format("{}{}: kv heads {}", l ? "; " : "", which, ranges(p.owned_kv_heads(i, l)));
      }
    } else {
      out += fmt::format("kv head h of layer l when (l * {} + h) % {} == {}; layer 0: kv heads {}", g.n_kv_heads,
                         r_count, i, ranges(p.owned_kv_heads(i, 0)));
    }
    out += "\n";
  }
  return out;
}

}  // namespace ra
