#include "launcher/control/job_launcher.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "launcher/control/child_process.h"
#include "launcher/control/shm_cleanup.h"
#include "launcher/plan/mpirun_command.h"

namespace ra {
namespace {

std::filesystem::path job_directory(const RunPlan& plan) {
  namespace fs = std::filesystem;
  fs::path base;
  if (!plan.config.hostfile.empty()) {
    base = fs::current_path() / ".ra-jobs";
  } else {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp && *tmp ? tmp : "/tmp";
  }
  return base / ("ra-job-" + plan.job_id);
}

}  // namespace

PipelineExecutables find_pipeline_executables() {
  namespace fs = std::filesystem;
  const fs::path self = fs::read_symlink("/proc/self/exe");
  PipelineExecutables exes{(self.parent_path() / "ra-gpu-worker").string(),
                           (self.parent_path() / "ra-cpu-retriever").string()};
  for (const std::string& exe : {exes.worker, exes.retriever}) {
    RA_REQUIRE(access(exe.c_str(), X_OK) == 0, "{} is missing or not executable: it is built beside `ra` (this build "
               "needs MPI; see scripts/setup.sh)", exe);
  }
  return exes;
}

std::vector<std::string> job_mpirun_argv(const RunPlan& plan, const NumaTopology& local, const std::string& plan_path,
                                         const PipelineExecutables& exes) {
  std::vector<std::string> argv = mpirun_argv(plan, plan_path, exes.worker, exes.retriever);
  // OpenMP threads that spin after a parallel region starve a peer rank on the same CPU (decode 70x slower
  // measured), and sleeping ones pay a wake-up per layer (1.2-1.4x slower decode where the threads fit).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    argv.insert(argv.begin() + 1, {"-x", "OMP_WAIT_POLICY=" + omp_wait_policy_for(plan, local)});
  }
  if (std::getenv("RA_LOGITS_TRACE") != nullptr) argv.insert(argv.begin() + 1, {"-x", "RA_LOGITS_TRACE"});
  return argv;
}

int launch_job(const RunPlan& plan, const NumaTopology& local) {
  namespace fs = std::filesystem;
  const PipelineExecutables exes = find_pipeline_executables();
  const fs::path dir = job_directory(plan);
  fs::create_directories(dir);
  const fs::path plan_path = dir / "plan.json";
  {
    std::ofstream out(plan_path);
    out << plan_to_json(plan).dump(2) << "\n";
    RA_REQUIRE(out.good(), "cannot write the plan file {}", plan_path.string());
  }
  const std::vector<std::string> argv = job_mpirun_argv(plan, local, plan_path.string(), exes);
  const int code = run_forwarding_signals(argv);

  remove_leftover_shm_segments("ra-" + plan.job_id + "-");
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return code;
}

}  // namespace ra
