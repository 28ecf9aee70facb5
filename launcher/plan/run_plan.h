#pragma once
// The run plan: which rank does what, where, with how many threads, and which (layer, kv_head) units
// each retriever owns (DESIGN §2). `ra` makes it once, writes it to a file, and every rank reads the
// same file; the start-up handshake compares plan_digest so ranks of different runs never talk.
//
// Ranks: 0 is the GPU worker; retriever i is rank 1 + i. Modes full and window have no retrievers.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "launcher/plan/numa_topology.h"
#include "launcher/config/run_config.h"
#include "launcher/plan/hostfile.h"

namespace ra {

struct ModelConfig;

// What the retrievers must know of the model (DESIGN §4).
struct Geometry {
  int64_t n_layers = 0;
  int64_t n_heads = 0;       // query heads
  int64_t n_kv_heads = 0;    // n_heads % n_kv_heads == 0; query head h reads kv head h / (n_heads / n_kv_heads)
  int64_t head_dim = 0;
  float scale = 0;           // score scale, 1/sqrt(head_dim) unless the model says otherwise
  std::string kv_dtype;      // "BF16", "F16" or "F32": the CPU KV storage dtype

  bool operator==(const Geometry&) const = default;
};

// Calls f(name, &Geometry::field) for every field, in declaration order: the plan file and the worker's
// check against the loaded model walk this one list.
template <typename F>
void for_each_geometry_field(F&& f) {
  f("n_layers", &Geometry::n_layers);
  f("n_heads", &Geometry::n_heads);
  f("n_kv_heads", &Geometry::n_kv_heads);
  f("head_dim", &Geometry::head_dim);
  f("scale", &Geometry::scale);
  f("kv_dtype", &Geometry::kv_dtype);
}

// The geometry of a loaded model; kv_dtype "F32" when weight_dtype is none of BF16/F16/F32.
Geometry make_geometry(const ModelConfig& config, const std::string& weight_dtype);

struct RetrieverPlacement {
  int rank = 0;
  std::string host;          // "localhost" without a hostfile
  int numa_node = -1;        // index into that host's NumaTopology::nodes; -1 = unbound
  int threads = 1;
  // The CPUs its search threads are pinned to, thread i to cpus[i % size]: one per physical core of its
  // node, the node's cores split between the retrievers on it (none shares a core); empty = unpinned.
  std::vector<int> cpus;

  bool operator==(const RetrieverPlacement&) const = default;
};

struct RunPlan {
  RunConfig config;
  Geometry geometry;
  int world_size = 1;                          // 1 + retrievers.size()
  std::vector<RetrieverPlacement> retrievers;  // retriever i is rank 1 + i
  std::string worker_host = "localhost";       // rank 0's host
  std::string job_id;                          // unique per run: shm segments are "ra-<job_id>-r<rank>"

  int num_retrievers() const { return static_cast<int>(retrievers.size()); }
  // The retriever index in [0, R) owning (layer, kv_head): (layer * n_kv_heads + kv_head) % R, so each
  // layer spreads over min(R, n_kv_heads) retrievers. Asserts R > 0 and the indexes in range.
  int owner(int64_t layer, int64_t kv_head) const;
  // The kv heads of `layer` that `retriever` owns, ascending.
  std::vector<int64_t> owned_kv_heads(int retriever, int64_t layer) const;
  // The query heads reading those kv heads (their whole GQA groups), ascending.
  std::vector<int64_t> owned_query_heads(int retriever, int64_t layer) const;
};

// Plans the ranks. `local` is this machine's topology, assumed for every host of the hostfile too (each
// retriever redoes its own placement from its host's topology: placed_on_this_host); `hosts` empty =
// everything on this machine. Calls validate(config) and checks the geometry. Throws
// ra::Error when the hostfile has too few slots, or when transport shm would put a retriever on a host
// other than the worker's (naming the host and suggesting --transport ucx).
//   Single host: retriever i gets NUMA node i % nodes and threads = that node's cores / retrievers on
//   it (at least 1), unless config.retriever_threads is set; the node's cores are split into consecutive
//   runs, one per retriever on it, which its threads are pinned to (RetrieverPlacement::cpus).
//   Hostfile: the worker is rank 0 on the first host; retrievers fill the slots in hostfile order; on
//   each host the retrievers take its NUMA nodes round robin.
RunPlan make_run_plan(const RunConfig& config, const Geometry& geometry, const NumaTopology& local,
                      const std::vector<HostSlots>& hosts);

// Retriever `rank`'s placement redone from the topology of the host it runs on (`here`), by the rules
// make_run_plan applied to the launching machine's: a host with other NUMA nodes or cores than that
// one gets its own placement, not the launcher's guess. Equal to the plan's when `here` equals `local`.
RetrieverPlacement placed_on_this_host(const RunPlan& plan, int rank, const NumaTopology& here);

// Beside the plan file in the job directory: the worker rank's exit code, written as it exits
// (process_common.h), which `ra` watches to bound mpirun's teardown (job_launcher.cpp).
inline constexpr const char* kWorkerExitFile = "worker.exit";

// The plan file: {"format": "ra-plan", "version": 2, ...}. plan_from_json checks the format, version
// and consistency; errors name `source`.
nlohmann::json plan_to_json(const RunPlan& plan);
RunPlan plan_from_json(const nlohmann::json& j, const std::string& source);

// The plan as compact JSON with sorted keys; equal plans give equal text.
std::string canonical_plan_text(const RunPlan& plan);
// FNV-1a 64 of canonical_plan_text.
uint64_t plan_digest(const RunPlan& plan);

// For --dry-run and logs: mode, transport, ranks with hosts, NUMA nodes and threads, and which
// (layer, kv_head) units each retriever owns, compactly. Ends with a newline.
std::string describe_plan(const RunPlan& plan);

// How the ranks' OpenMP threads should wait between parallel regions, per role ("" = leave
// OMP_WAIT_POLICY unset: libgomp spins a bounded while, then sleeps). A spinning thread that shares a CPU
// with the peer it waits for starves it: decode on 16 CPUs with 16 worker and 16 retriever threads ran at
// 6 tokens/s spinning against 420 sleeping, while with 8 + 8 spinning gave 1.2-1.4x the sleeping speed
// (docs/pipeline.md). Threads counted per host: the worker's busy ones (a GPU worker's: 1, its host
// thread; a CPU worker's: config.worker_threads, 0 = every CPU) and each retriever's.
//   every host's threads fit its CPUs: ACTIVE for every rank;
//   else a GPU worker: PASSIVE for the worker (its OpenMP pool idles through the decode; spinning it
//     starved the searches, 12x slower: docs/perf.md twelfth round) and, where the retrievers' threads
//     alone fit each host, the retrievers left at libgomp's bounded spin (what every GPU figure so far
//     ran with), else PASSIVE;
//   else PASSIVE for every rank.
// `local` stands for every host, as in make_run_plan.
struct OmpWaitPolicies {
  std::string worker;
  std::string retriever;
};
OmpWaitPolicies omp_wait_policies_for(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu);

// The shared-memory channels' spin budgets, in µs, of the retrievers and the worker
// (RA_SHM_SPIN_US_RETRIEVER / RA_SHM_SPIN_US_WORKER, transport/shm/shm_channel.h); nullopt = the
// channel's default (50 µs). Measured on the GPU machine (docs/perf.md, twelfth round): with the default
// every retriever was asleep when the next layer's kStep came (the worker's own work between two layers
// is ~180 µs at 8B) and its wake-up cost ~100 µs per round trip; spinning 2 ms on the retriever side and
// not at all on the worker's made the 32K token 10% faster.
//   retriever_us = kRetrieverSpinWithRoom when one spinning service thread per retriever fits beside the
//     worker's busy threads on the host (a GPU worker: 1, its host thread; a CPU worker: its compute
//     threads, every CPU by default): only then is the spin free;
//   worker_us = 0 (no spin) when the retrievers' search threads leave the host no CPU for the worker: its
//     spin would take one from a search.
// Shared memory only (every rank on the launcher's host); other transports: both nullopt.
struct ShmSpinBudgets {
  std::optional<int> retriever_us;
  std::optional<int> worker_us;
};
inline constexpr int kRetrieverSpinWithRoom = 2000;
ShmSpinBudgets shm_spin_budgets_for(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu);

}  // namespace ra
