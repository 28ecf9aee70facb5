#pragma once
// Starts a planned pipeline job under mpirun and stays with it until it ends (issue #4 §5–6):
//  - writes the plan file (TMPDIR for one host; ./.ra-jobs/ with a hostfile, which every node must see,
//    e.g. a shared home directory);
//  - runs mpirun with the MPMD line of mpirun_command.h; the ranks' stdout and stderr pass straight
//    through (the worker's stdout is the generated text);
//  - forwards SIGINT/SIGTERM/SIGHUP to mpirun, which ends every rank;
//  - afterwards removes any shm segment of this job left in /dev/shm, and the plan file.

#include <string>
#include <vector>

#include "launcher/plan/numa_topology.h"
#include "launcher/plan/run_plan.h"

namespace ra {

// The paths of ra-gpu-worker and ra-cpu-retriever: beside the running `ra` binary. Throws ra::Error
// naming the missing file.
struct PipelineExecutables {
  std::string worker;
  std::string retriever;
};
PipelineExecutables find_pipeline_executables();

// mpirun's command line for the plan: mpirun_command.h's, plus the environment the ranks get unless the
// user set it: OMP_WAIT_POLICY from omp_wait_policies_for(plan, local, worker_on_gpu), the shared-memory spin budgets from
// shm_spin_budgets_for(plan, local, worker_on_gpu), and RA_LOGITS_TRACE when set. worker_on_gpu: the
// worker computes on a GPU (its backend, resolved on this machine).
std::vector<std::string> job_mpirun_argv(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu,
                                         const std::string& plan_path, const PipelineExecutables& exes);

// Returns mpirun's exit code (128 + N when it died of signal N). local: this machine, as planned.
int launch_job(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu);

}  // namespace ra
