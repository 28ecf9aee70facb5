#include "launcher/control/job_launcher.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "common/error.h"
#include "launcher/control/child_process.h"
#include "launcher/control/shm_cleanup.h"
#include "launcher/plan/mpirun_command.h"

namespace ra {
namespace {

std::filesystem::path jobs_base(const RunPlan& plan) {
  namespace fs = std::filesystem;
  if (!plan.config.hostfile.empty()) return fs::current_path() / ".ra-jobs";
  const char* tmp = std::getenv("TMPDIR");
  return tmp && *tmp ? tmp : "/tmp";
}

std::filesystem::path job_directory(const RunPlan& plan) { return jobs_base(plan) / ("ra-job-" + plan.job_id); }

constexpr const char* kLauncherPidFile = "launcher.pid";

// Whether the user's extra mpirun arguments mention `what` (then they set it themselves).
bool mentions(const std::vector<std::string>& args, std::string_view what) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) { return a.find(what) != std::string::npos; });
}

// Job directories under `base` whose launcher (the pid in their launcher.pid) has exited: a job killed
// with its `ra`. Removed with what they hold (plan file, Open MPI's shared-memory files).
void remove_dead_job_directories(const std::filesystem::path& base) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (auto it = fs::directory_iterator(base, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with("ra-job-")) continue;
    std::ifstream in(it->path() / kLauncherPidFile);
    long pid = 0;
    if (!(in >> pid) || pid <= 0) continue;  // not ours, or a job of an older build: leave it
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::fprintf(stderr, "ra: removing %s of an exited job\n", it->path().c_str());
    std::error_code ignored;
    fs::remove_all(it->path(), ignored);
  }
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

std::vector<std::string> job_mpirun_argv(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu,
                                         const std::string& plan_path, const PipelineExecutables& exes) {
  // The ranks' environment (per app context: mpirun_command.h), each variable unless the user set it.
  RankEnvironment env;
  // OpenMP threads that spin after a parallel region starve a peer rank on the same CPU (decode 70x slower
  // measured), and sleeping ones pay a wake-up per layer (1.2-1.4x slower decode where the threads fit).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    const OmpWaitPolicies omp = omp_wait_policies_for(plan, local, worker_on_gpu);
    if (!omp.worker.empty()) env.worker.push_back("OMP_WAIT_POLICY=" + omp.worker);
    if (!omp.retriever.empty()) env.retriever.push_back("OMP_WAIT_POLICY=" + omp.retriever);
  }
  // Each side's shared-memory spin, where the user set neither it nor both (RA_SHM_SPIN_US).
  const ShmSpinBudgets spins = shm_spin_budgets_for(plan, local, worker_on_gpu);
  const bool spin_set = std::getenv("RA_SHM_SPIN_US") != nullptr;
  if (spins.retriever_us && !spin_set && std::getenv("RA_SHM_SPIN_US_RETRIEVER") == nullptr) {
    env.retriever.push_back("RA_SHM_SPIN_US_RETRIEVER=" + std::to_string(*spins.retriever_us));
  }
  if (spins.worker_us && !spin_set && std::getenv("RA_SHM_SPIN_US_WORKER") == nullptr) {
    env.worker.push_back("RA_SHM_SPIN_US_WORKER=" + std::to_string(*spins.worker_us));
  }
  if (std::getenv("RA_LOGITS_TRACE") != nullptr) env.worker.emplace_back("RA_LOGITS_TRACE");
  std::vector<std::string> argv = mpirun_argv(plan, plan_path, exes.worker, exes.retriever, env);
  const auto& extra = plan.config.mpirun_extra_args;
  // Open MPI's shared-memory transport (vader) keeps a file per rank in /dev/shm, and its session
  // directory lives in TMPDIR: a killed job leaves both behind. On one host they go to the job directory
  // instead, which is removed after the job (or, if `ra` was killed too, by the next job's sweep).
  if (plan.config.hostfile.empty() && !mentions(extra, "btl_vader_backing_directory")) {
    std::string dir = std::filesystem::path(plan_path).parent_path().string();
    if (dir.empty()) dir = "<job-dir>";  // a dry run's placeholder plan path
    argv.insert(argv.begin() + 1, {"--mca", "btl_vader_backing_directory", dir, "--mca", "orte_tmpdir_base", dir});
  }
  return argv;
}

int launch_job(const RunPlan& plan, const NumaTopology& local, bool worker_on_gpu) {
  namespace fs = std::filesystem;
  const PipelineExecutables exes = find_pipeline_executables();
  remove_stale_shm_segments("ra-");
  remove_dead_job_directories(jobs_base(plan));
  const fs::path dir = job_directory(plan);
  fs::create_directories(dir);
  {
    std::ofstream pid_file(dir / kLauncherPidFile);
    pid_file << getpid() << "\n";
  }
  const fs::path plan_path = dir / "plan.json";
  {
    std::ofstream out(plan_path);
    out << plan_to_json(plan).dump(2) << "\n";
    RA_REQUIRE(out.good(), "cannot write the plan file {}", plan_path.string());
  }
  const std::vector<std::string> argv = job_mpirun_argv(plan, local, worker_on_gpu, plan_path.string(), exes);
  // mpirun ends the other ranks once the worker has exited, but waits without a deadline for every
  // host's daemon to confirm it: one cut off from the network never does. Two liveness timeouts (the
  // retrievers' own detection of a lost worker) and 2 s more, then mpirun is stopped.
  const fs::path worker_exit = dir / kWorkerExitFile;
  const ExitBound bound{[&] { return fs::exists(worker_exit); },
                        std::chrono::milliseconds(2 * plan.config.liveness_timeout_ms + 2000), "the worker rank exited"};
  bool stopped = false;
  int code = run_forwarding_signals(argv, &bound, &stopped);
  if (stopped) {  // the worker's own code, not the signal mpirun was killed by: the run's outcome
    std::ifstream in(worker_exit);
    if (!(in >> code)) code = 1;
  }

  remove_leftover_shm_segments("ra-" + plan.job_id + "-");
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return code;
}

}  // namespace ra
