// ra-cpu-retriever: one CPU retriever rank of a pipeline job (DESIGN §2). mpirun starts it with
// `--plan PLAN.json`; it binds itself to its NUMA node, connects to the worker over the plan's
// transport, and serves requests until the worker says kShutdown. Exit codes: 0 after a clean
// shutdown, 1 after any error (reported with rank and host), 128 + N on signal N.

#include <cstdio>
#include <string>

#include "cpu_retriever/maintenance_pool.h"
#include "cpu_retriever/retriever_service.h"
#include "launcher/plan/numa_topology.h"
#include "launcher/ranks/peer_links.h"
#include "cpu_retriever/graph_build.h"
#include "launcher/ranks/process_common.h"
#include "launcher/ranks/retriever_reports.h"
#include "launcher/ranks/retriever_setup.h"
#include "launcher/ranks/thread_pinning.h"
#include "transport/heartbeat.h"

namespace ra {
namespace {

constexpr const char* kProgram = "ra-cpu-retriever";

int run(transport::MpiSession& mpi, int argc, char** argv) {
  const RunPlan plan = read_plan_file(plan_path_from_args(argc, argv, kProgram));
  const int rank = mpi.rank();
  install_exit_signal_handlers(plan.config.transport == TransportKind::kShm ? shm_segment_name(plan, rank) : "");
  agree_on_plan(mpi, plan, kProgram);
  RA_REQUIRE(rank >= 1 && rank < plan.world_size, "rank {} is not a retriever rank of this plan", rank);

  // The launcher planned every host as if it were its own: this host's topology decides here.
  const NumaTopology here = detect_numa_topology();
  RunPlan local_plan = plan;
  const RetrieverPlacement& place = local_plan.retrievers[static_cast<size_t>(rank - 1)] =
      placed_on_this_host(plan, rank, here);
  std::string binding;
  if (place.numa_node >= 0) bind_this_process_to_numa_node(here, place.numa_node, &binding);
  std::fprintf(stderr, "%s rank %d on %s: %s; %s; %d threads; %s\n", kProgram, rank, mpi.host().c_str(),
               describe(here).c_str(), binding.empty() ? "not bound" : binding.c_str(), place.threads,
               describe_rank_waits(plan, true).c_str());

  PeerLinks links = connect_peers(mpi, plan);
  transport::HeartbeatThread heartbeat(links.raw());
  retriever::RetrieverService service(retriever_service_config(local_plan, rank, rank_name(plan, rank)));
  // Every other thread first (they keep the node's CPUs): then this thread's search team, pinned.
  retriever::process_maintenance_pool();
  std::string pinning;
  bool pinned = false;
  if (plan.config.pin_retriever_threads) {
    pinned = pin_openmp_team(place.cpus, place.threads, &pinning);
  } else {
    pinning = "threads not pinned (pin_retriever_threads: false)";
  }
  std::fprintf(stderr, "%s rank %d on %s: %s\n", kProgram, rank, mpi.host().c_str(), pinning.c_str());
  // The worker's plan holds the launcher's guess for this host: the kHelloAck tells it what happened here.
  service.set_report(make_retriever_report(plan, rank, mpi.host(), here, place,
                                           binding.empty() ? "NUMA binding: none (the plan leaves it unbound)" : binding,
                                           pinned));
  service.serve(*links.channels.front());
  const auto& s = service.stats();
  std::fprintf(stderr,
               "%s rank %d: %lld steps, build %.3f s (%lld layers with training lists from the worker, %lld "
               "restored from a save), search %.3f s, %.1f MiB of KV (%s) and indexes\n",
               kProgram, rank, static_cast<long long>(s.steps), s.build_seconds,
               static_cast<long long>(s.layers_with_lists), static_cast<long long>(s.layers_loaded), s.search_seconds,
               static_cast<double>(s.memory_bytes) / (1 << 20),
               retriever::kv_dtypes_name(retriever_kv_dtypes(plan)).c_str());
  if (const retriever::GraphBuildSteps steps = retriever::graph_build_steps(); steps.builds > 0) {
    std::fprintf(stderr, "%s rank %d: graph build steps (wall time summed over builds): %s\n", kProgram, rank,
                 retriever::describe_graph_build_steps(steps).c_str());
  }
  std::fprintf(stderr,
               "%s rank %d: first step %.3f ms, slowest %.3f ms (step %lld, layer %lld: %.3f ms parsing and appending, "
               "%.3f ms searching)\n",
               kProgram, rank, 1e3 * s.first_step_seconds, 1e3 * s.slowest_step_seconds,
               static_cast<long long>(s.slowest_step), static_cast<long long>(s.slowest_step_layer),
               1e3 * s.slowest_step_append_seconds, 1e3 * s.slowest_step_search_seconds);
  if (s.steps > 0 && s.query_heads_searched > 0) {
    const double heads = static_cast<double>(s.query_heads_searched);
    std::fprintf(stderr,
                 "%s rank %d: mean step %.3f ms (%.3f ms parsing and appending, %.3f ms searching); per query head "
                 "%.1f rows scored, %.1f hops\n",
                 kProgram, rank, 1e3 * s.search_seconds / static_cast<double>(s.steps),
                 1e3 * s.append_seconds / static_cast<double>(s.steps),
                 1e3 * s.searching_seconds / static_cast<double>(s.steps),
                 static_cast<double>(s.distance_computations) / heads, static_cast<double>(s.hops) / heads);
  }
  if (const UsageRange& u = s.decode_usage; u.samples > 0) {
    constexpr double kGiB = 1 << 30;
    std::fprintf(stderr,
                 "%s rank %d: over the decode steps (%lld samples): threads %lld to %lld, RSS %.3f GiB at the first "
                 "step, %.3f GiB at the last, %.3f GiB at the peak\n",
                 kProgram, rank, static_cast<long long>(u.samples), static_cast<long long>(u.threads_min),
                 static_cast<long long>(u.threads_max), static_cast<double>(u.rss_first) / kGiB,
                 static_cast<double>(u.rss_last) / kGiB, static_cast<double>(u.rss_max) / kGiB);
  }
  if (s.evicted > 0 && s.merged_keys + s.tail_keys > 0) {
    const retriever::MaintenancePool::Stats m = retriever::process_maintenance_pool().stats();
    std::fprintf(stderr,
                 "%s rank %d: %lld evicted tokens (%lld with their queries' decode answers); graph merges: %lld keys "
                 "merged, %lld left in the flat tails; %lld merge jobs, %.1f s CPU on %d pool threads (%.1f s wall), "
                 "%.3f ms CPU per merged key\n",
                 kProgram, rank, static_cast<long long>(s.evicted), static_cast<long long>(s.evicted_with_answers),
                 static_cast<long long>(s.merged_keys), static_cast<long long>(s.tail_keys),
                 static_cast<long long>(m.jobs), m.cpu_seconds, retriever::process_maintenance_pool().threads(),
                 m.wall_seconds, s.merged_keys > 0 ? 1e3 * m.cpu_seconds / static_cast<double>(s.merged_keys) : 0.0);
  }
  mpi.barrier("shutdown", transport::deadline_after(std::chrono::seconds(30)));
  return 0;
}

}  // namespace
}  // namespace ra

int main(int argc, char** argv) { return ra::run_pipeline_process(ra::kProgram, argc, argv, ra::run); }
