#pragma once
// The mpirun command line of a plan: one MPMD app context per rank, so each can name its host.
//
//   mpirun [--allow-run-as-root] --oversubscribe [--hostfile F] [--bind-to none] [extra args...]
//          -n 1 [--host H0] [-x VAR=VALUE ...] WORKER --plan PLAN : -n 1 [--host H1] [-x ...] RETRIEVER ...
//
// Environment for the ranks goes with every app context: Open MPI 4 applies a -x given before the
// first context to that context alone (so the retrievers never saw an OMP_WAIT_POLICY placed there).
//
// --bind-to none because each retriever binds itself to its NUMA node (numa_topology.h); it is left out
// when the config's mpirun_extra_args already say --bind-to. --host appears only with a hostfile.

#include <string>
#include <vector>

#include "launcher/plan/run_plan.h"

namespace ra {

// geteuid() == 0: Open MPI refuses to start as root without --allow-run-as-root.
bool running_as_root();

// The global options every mpirun line of ours starts with, before its app contexts:
//   MPIRUN [--allow-run-as-root] --oversubscribe [--hostfile F] [--bind-to none] [extra args...]
// --bind-to none unless `extra` already says --bind-to; --hostfile only when `hostfile` is not empty.
std::vector<std::string> mpirun_prefix(const std::string& mpirun, bool as_root, const std::string& hostfile,
                                       const std::vector<std::string>& extra);

// The ranks' environment: "VAR=VALUE" (or "VAR": its value here) for every rank, for the worker only,
// for every retriever only.
struct RankEnvironment {
  std::vector<std::string> all, worker, retriever;
};

// argv[0] is plan.config.mpirun. rank_env goes to the app contexts as -x pairs, after the `-x` pairs of
// the config's mpirun_extra_args (which go to every rank). `as_root` adds --allow-run-as-root.
std::vector<std::string> mpirun_argv(const RunPlan& plan, const std::string& plan_path, const std::string& worker_exe,
                                     const std::string& retriever_exe, const RankEnvironment& rank_env = {},
                                     bool as_root = running_as_root());

// The words joined by spaces, each quoted for a POSIX shell only when it needs it: for --dry-run.
std::string shell_quote_join(const std::vector<std::string>& words);

}  // namespace ra
